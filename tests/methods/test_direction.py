"""The one rule of direction: methods/ never imports ray (nor the orchestrator); and
methods/ has no import cycle, not even one held apart by a function-level import."""

from __future__ import annotations

import ast
from pathlib import Path

METHODS = Path(__file__).resolve().parents[2] / "methods"


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_methods_never_imports_ray_or_the_orchestrator():
    files = sorted(METHODS.rglob("*.py"))
    assert len(files) > 15
    offenders = {
        str(path.relative_to(METHODS)): module
        for path in files
        for module in _imported_modules(path)
        if module.split(".")[0] in ("ray", "orchestrator")
    }
    assert offenders == {}


# ----------------------------------------------------------------- no import cycle


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = METHODS) -> dict[str, set[str]]:
    """Module -> the modules of the ``methods`` package it imports, from every import
    statement in its file: module level, inside functions, under ``TYPE_CHECKING``.

    ``from package import name`` is an edge to ``package.name`` when that is a module,
    else to ``package`` (its ``__init__``). Importing a submodule is not counted as
    importing its parent packages: Python runs their ``__init__`` first, but the
    importer depends on the submodule alone.
    """
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}

    def package_of(name: str) -> str:
        return name if name in packages else name.rpartition(".")[0]

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package upwards
                    anchor = package_of(name).split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    edges.add(submodule if submodule in files else base)
        graph[name] = {m for m in edges if m in files}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions_and_cycles():
    graph = import_graph()
    assert "methods.evaluate" in graph["methods.loop"]  # module level
    assert "methods.data" in graph["methods.evaluate"]  # inside corruption_accuracy
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_methods_has_no_import_cycle():
    """Every import counts, lazy (function-level) ones included: a cycle held apart by
    an import inside a function is still a cycle."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in methods/: " + " -> ".join(cycle or ())
