"""Scale-out on a shared volume (no object store): the database holds the pointers, and the volume's
``current`` and ``promotions.jsonl`` are rewritten from it after every promotion, so a start on an empty
database takes them; a database that has a pointer keeps it and rewrites a copy that differs."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from closecast import registry
from closecast.pointer_store import FilePointers
from tests.helpers import FIXTURE_VERSION, copy_registry

SECOND = "20261124T000000Z-second00"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = copy_registry(tmp_path / "models")
    shutil.copytree(root / "default" / FIXTURE_VERSION, root / "default" / SECOND)
    return root


@pytest.fixture
def database(pg_url: str) -> Iterator[Any]:
    from app.storage.pg import Database

    db = Database(pg_url)
    db.open()
    with db.connection() as conn:
        conn.execute("TRUNCATE pointers, promotions")
    yield db
    db.close()


def test_every_promotion_is_copied_to_the_volume(database: Any, model_dir: Path) -> None:
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    store = PostgresPointers(database, FilePointers(model_dir))
    seed_pointers(store, ["default"])
    store.promote("default", SECOND, "test: better")
    files = model_dir / "default"
    assert registry.read_pointer(files).version == SECOND
    assert registry.promotion_history(files) == store.history("default")
    store.promote("default", FIXTURE_VERSION, "test: rollback")
    assert registry.read_pointer(files).version == FIXTURE_VERSION
    assert [p.version for p in registry.promotion_history(files)][-2:] == [SECOND, FIXTURE_VERSION]


def test_a_database_with_a_pointer_keeps_it_and_rewrites_a_differing_copy(
    database: Any, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    store = PostgresPointers(database, FilePointers(model_dir))
    seed_pointers(store, ["default"])
    store.promote("default", SECOND, "test: better")
    files = model_dir / "default"
    (files / registry.CURRENT_POINTER).write_text(FIXTURE_VERSION + "\n")  # an old copy put back by hand
    with caplog.at_level(logging.WARNING, logger="app.storage.pg_pointers"):
        assert seed_pointers(store, ["default"]) == []
    assert store.current("default") == SECOND
    assert f"the database points model default at {SECOND}" in caplog.text
    assert registry.read_pointer(files).version == SECOND


def test_an_empty_database_takes_the_copy_of_the_last_promotion(pg_cluster: Any, model_dir: Path) -> None:
    from app.storage.pg import Database
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    first = Database(pg_cluster.create_database())
    second = Database(pg_cluster.create_database())
    first.open()
    second.open()
    try:
        seed_pointers(PostgresPointers(first, FilePointers(model_dir)), ["default"])
        PostgresPointers(first, FilePointers(model_dir)).promote("default", SECOND, "test: better")
        fresh = PostgresPointers(second, FilePointers(model_dir))
        assert seed_pointers(fresh, ["default"]) == ["default"]
        assert fresh.current("default") == SECOND
        assert [p.version for p in fresh.history("default")][-1] == SECOND
    finally:
        first.close()
        second.close()
