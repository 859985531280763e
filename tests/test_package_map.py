"""The package map of the README, enforced: each module imports only the rooms below it,
and no import of ours hides inside a function (where it would hide a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import seqmodels

PACKAGE = Path(seqmodels.__file__).parent

# room -> the rooms of ours it may import (a room is a subpackage or a top-level module)
ALLOWED = {
    "errors": set(),
    "nn": {"errors"},
    "data": {"errors"},
    "config_check": {"errors"},
    "tensorboard": set(),
    "tasks": {"errors", "nn", "data"},
    "checkpoint": {"errors", "data"},
    "run_lock": {"errors"},
    "threads": {"errors"},
    "preemption": {"errors", "checkpoint", "run_lock"},
    "train": {
        "errors",
        "checkpoint",
        "config_check",
        "tasks",
        "data",
        "tensorboard",
        "run_lock",
        "preemption",
        "threads",
    },
    "evaluate": {"errors", "checkpoint", "train"},
    "predict": {"errors", "checkpoint", "data", "tasks"},
    "sample": {"errors", "checkpoint", "data", "tasks"},
    "export": {"errors", "checkpoint", "data", "nn", "tasks"},
    "cli": {
        "errors",
        "data",
        "train",
        "evaluate",
        "predict",
        "sample",
        "export",
        "preemption",
        "run_lock",
    },
    "__init__": set(),
}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imports_of(tree: ast.AST) -> list[tuple[str, bool]]:
    """(seqmodels room imported, whether at module level) for every import of ours."""
    found = []
    top = {id(n) for n in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqmodels"):
            names = (
                [node.module]
                if node.module != "seqmodels"
                else [f"seqmodels.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("seqmodels")]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1:
                found.append((parts[1], id(node) in top))
    return found


def test_every_module_imports_only_the_rooms_below_it():
    modules = [p for p in PACKAGE.rglob("*.py") if "configs" not in p.parts]
    assert len(modules) > 20
    for path in modules:
        room = room_of(path)
        assert room in ALLOWED, f"{path} is not on the package map (README, Development)"
        for imported, at_top in imports_of(ast.parse(path.read_text())):
            assert at_top, f"{path}: `import seqmodels.{imported}` inside a function"
            if imported != room:
                assert imported in ALLOWED[room], f"{path} imports seqmodels.{imported}"
