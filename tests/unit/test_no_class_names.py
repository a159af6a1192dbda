"""No class names are hard-coded outside the toy and its flavour-tagging reference: every analysis
names its own classes in its config."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAVOUR_CLASSES = {"bjets", "cjets", "ujets", "taujets", "light", "light-jet", "b-jet", "c-jet"}
#: The toy (its processes, detector and template) and the metrics module, whose TOY_CLASSES name the
#: classes of the toy's Bayes-optimal flavour reference.
ALLOWED = {"lib/toy", "lib/templates/toy.py", "lib/evaluate/metrics.py"}


def string_constants(path: Path) -> list[tuple[int, str]]:
    """String constants of a module's code (docstrings left out), with their line numbers."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_flavour_class_names_in_library_tasks_or_workflows():
    found = []
    for folder in ("lib", "tasks", "workflows"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(rel == a or rel.startswith(a + "/") for a in ALLOWED):
                continue
            found += [f"{rel}:{line}: {value!r}" for line, value in string_constants(path) if value in FLAVOUR_CLASSES]
    assert not found, "hard-coded class names:\n" + "\n".join(found)
