"""The orchestrator's wings import one way (docs/architecture.md):

    cli -> sweeps -> run -> explain, figures -> leaderboard -> foundation

(the foundation: config, flags, storage, checkpoints, layout, cluster). Every import
counts, the ones inside functions too, and no module takes part in a circle. The
leaderboard wing never imports torch (reading results stays cheap), and neither does
``limelight leaderboard``. ``tests/methods/test_direction.py`` holds the other rule:
methods/ never imports Ray or the orchestrator.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "orchestrator"
RANK = {"cli": 5, "sweeps": 4, "run": 3, "explain": 2, "figures": 2, "leaderboard": 1}
FOUNDATION = 0


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The orchestrator modules ``path`` imports (``from a import b`` counts ``a.b`` when
    that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("orchestrator"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orchestrator"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found & known


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else "foundation"


def _rank(module: str) -> int:
    return RANK.get(_wing(module), FOUNDATION)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def test_the_wings_import_one_way():
    graph = _graph()
    assert len(graph) > 30
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _wing(a) != _wing(b) and _rank(b) >= _rank(a) and a != "orchestrator.__main__"
    )
    assert upward == [], "imports against the direction:\n" + "\n".join(upward)


def test_no_module_takes_part_in_an_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (circle := visit(target)):
                return circle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (circle := visit(start)):
            raise AssertionError("import circle: " + " -> ".join(circle))


def _imports_torch(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1] == "True"


def test_the_leaderboard_wing_and_its_verb_import_no_torch(tmp_path):
    leaderboard = [_module_name(p) for p in (PACKAGE / "leaderboard").rglob("*.py")]
    assert leaderboard
    assert not _imports_torch("\n".join(f"import {m}" for m in leaderboard))
    main = "from orchestrator.cli import main\n"
    run_verb = f"{main}main(['leaderboard', '--storage', {str(tmp_path)!r}])"
    assert not _imports_torch(run_verb)
    for argv in (["leaderboard", "--help"], ["--help"]):
        help_text = f"{main}try:\n    main({argv!r})\nexcept SystemExit:\n    pass"
        assert not _imports_torch(help_text), argv
