"""The package boundaries of DESIGN.md: `core` imports none of the roles, and no role imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("validator", "miner", "trainer")
FORBIDDEN = {"core": {*ROLES, "god"}, **{role: {*(set(ROLES) - {role}), "god"} for role in ROLES}}


def imported_top_level_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_its_boundary(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package} has no modules"
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported_top_level_packages(path) & FORBIDDEN[package]
    ]
    assert violations == []


def test_reference_training_repo_is_self_contained() -> None:
    """A miner's repo has only its own files: the reference trainer may not import the node's packages."""
    files = sorted((ROOT / "trainer" / "reference").rglob("*.py"))
    assert files
    for path in files:
        assert imported_top_level_packages(path).isdisjoint({"core", *ROLES, "god"}), path
