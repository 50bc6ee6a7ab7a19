"""The one-way house: serving and training stand on the core and never on each other.

Every import anywhere in a file counts (top level, inside functions, under ``TYPE_CHECKING``), read from the
source with ``ast`` so a lazy import cannot hide from the check.
"""

from __future__ import annotations

import ast
import re
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
# module -> why it may be longer than MAX_LINES (empty: every module fits). A file is split at its seams; one
# that has none yet is listed here with its reason, rather than cut where the line count bites.
LONGER_ALLOWED: dict[str, str] = {}


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
    assert {k: n for k, n in sizes.items() if n > MAX_LINES and k not in LONGER_ALLOWED} == {}


def test_size_allow_list_is_current() -> None:
    """Each file let through is still there and still needs it, and says why."""
    stale = {
        name: reason
        for name, reason in LONGER_ALLOWED.items()
        if not reason
        or not (ROOT / name).is_file()
        or len((ROOT / name).read_text(encoding="utf-8").splitlines()) <= MAX_LINES
    }
    assert stale == {}


def test_import_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The check itself: an import inside a function body is found."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from training.train import fit\n    import torch.nn\n")
    assert imported_roots(module) == {"training", "torch"}


# --- the module graph: no circle anywhere, and the rooms' one-way rules inside app/

PACKAGES = ("app", "closecast", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` a file imports, wherever the statement stands: ``import a.b`` and ``from a.b
    import c`` import ``a`` and ``a.b`` (their ``__init__``) and, when ``c`` is a module, ``a.b.c``."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            targets.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return (targets & known) - {here}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in sources(package)}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted: the modules each reaches
    that reach it back (a graph of a few hundred modules: plain reachability is fast enough)."""
    reach = {node: reachable(graph, node) for node in graph}
    components = {
        tuple(sorted({node} | {other for other in reach[node] if node in reach.get(other, ())}))
        for node in graph
        if node in reach[node]
    }
    return sorted(list(c) for c in components)


def test_no_import_circle() -> None:
    """Every module of the three packages can be read bottom-up: no two import each other, even lazily,
    under ``TYPE_CHECKING`` or through a package's ``__init__``."""
    assert circles(import_graph()) == []


def test_circle_check_sees_a_circle_through_an_init(tmp_path: Path) -> None:
    """The check itself: ``from pkg import x`` imports ``pkg/__init__.py``, which may close a circle."""
    graph = {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg"}, "pkg.c": {"pkg.a"}}
    assert circles(graph) == [["pkg", "pkg.a", "pkg.b"]]
    module = ROOT / "app" / "jobs" / "runner.py"
    assert "app.jobs" in imported_modules(module, {"app", "app.jobs", "app.jobs.shards"})


# room -> rooms of app/ it must never import (a room is a module or package under app/)
APP_ROOMS_NEVER: dict[str, set[str]] = {
    "app.jobs": {"app.api"},  # jobs run from a plain spec, never from an HTTP schema
    "app.storage": {"app.api", "app.jobs"},  # the stores are below whatever keeps jobs in them
    "app.inference": {"app.api", "app.jobs", "app.storage"},
}


@pytest.mark.parametrize("room", sorted(APP_ROOMS_NEVER))
def test_app_rooms_import_one_way(room: str) -> None:
    graph = import_graph()
    offenders = {
        module: sorted(
            t for t in targets if any(t == f or t.startswith(f"{f}.") for f in APP_ROOMS_NEVER[room])
        )
        for module, targets in graph.items()
        if module == room or module.startswith(f"{room}.")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


# --- ARCHITECTURE.md stays true to the code

ARCHITECTURE = ROOT / "ARCHITECTURE.md"
PATH_NAMED = re.compile(r"(?<![\w/.<])((?:app|closecast|training|tests|models|bench|docs)/[\w./-]*)")
NAME_IN_FILE = re.compile(r"`(\w+)` in `([\w/]+\.py)`")


def test_every_path_in_architecture_exists() -> None:
    named = set(PATH_NAMED.findall(ARCHITECTURE.read_text(encoding="utf-8")))
    assert len(named) > 20  # the check reads the document (a changed pattern would find nothing)
    assert sorted(p for p in named if not (ROOT / p.rstrip(".")).exists()) == []


def test_every_name_placed_in_architecture_is_defined_there() -> None:
    """A name the document places ("`build_manifest` in `closecast/manifest.py`") is defined at the top
    level of that file (a function, class or constant)."""
    claims = NAME_IN_FILE.findall(ARCHITECTURE.read_text(encoding="utf-8"))
    assert claims
    wrong = []
    for name, path in claims:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        defined = {
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        defined |= {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name)
        }
        if name not in defined:
            wrong.append(f"{name} in {path}")
    assert wrong == []
