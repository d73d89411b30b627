"""The one rule of direction: methods/ never imports ray (nor the orchestrator)."""

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
