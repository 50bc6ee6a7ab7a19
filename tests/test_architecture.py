"""The one-way house: serving and training stand on the core and never on each other.

Every import anywhere in a file counts (top level, inside functions, under ``TYPE_CHECKING``), read from the
source with ``ast`` so a lazy import cannot hide from the check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    "app": {"training", "torch"},
    "training": {"app", "fastapi", "starlette", "uvicorn"},
    "closecast": {
        *("app", "training", "torch", "fastapi", "starlette", "uvicorn", "pydantic"),
        *("psycopg", "psycopg_pool", "sqlalchemy"),  # the database backend lives in app/ (scale-out)
    },
}
MAX_LINES = 400


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module a file imports, wherever the import statement stands."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downhill(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in sources(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_modules_stay_small(package: str) -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sources(package)
    }
    assert {k: n for k, n in sizes.items() if n > MAX_LINES} == {}


def test_import_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The check itself: an import inside a function body is found."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from training.train import fit\n    import torch.nn\n")
    assert imported_roots(module) == {"training", "torch"}
