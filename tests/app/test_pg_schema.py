"""The PostgreSQL schema: created once when several processes start at once (advisory lock), and the
backends chosen by one setting."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from app.inference.models import LoadedModels
from app.metrics import Metrics
from app.storage.backends import build_backends
from app.storage.sqlite_jobs import SQLiteJobStore
from tests.helpers import make_settings


def test_processes_starting_at_once_create_the_schema_once(pg_cluster: Any) -> None:
    from app.storage.pg import MIGRATIONS, Database

    url = pg_cluster.create_database("schema")
    errors: list[BaseException] = []

    def start() -> None:
        db = Database(url, pool_size=1)
        try:
            db.open()
        except BaseException as exc:  # collected: the test fails with it
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = Database(url)
    db.open()
    with db.connection() as conn:
        versions = [r["version"] for r in conn.execute("SELECT version FROM closecast_schema").fetchall()]
    db.close()
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_without_a_database_url_the_backends_are_embedded(model_dir: Path) -> None:
    settings = make_settings(model_dir)
    holder = (models := LoadedModels(settings, Metrics())).default
    backends = build_backends(settings, models)
    assert backends.kind == "embedded" and isinstance(backends.store, SQLiteJobStore)
    assert type(holder.pointers).__name__ == "FilePointers"


def test_a_database_url_puts_jobs_and_pointers_in_postgresql(model_dir: Path, pg_url: str) -> None:
    settings = make_settings(model_dir, database_url=pg_url)
    holder = (models := LoadedModels(settings, Metrics())).default
    backends = build_backends(settings, models)
    try:
        backends.open()
        assert backends.kind == "postgresql" and type(backends.store).__name__ == "PostgresJobStore"
        assert type(holder.pointers).__name__ == "PostgresPointers"
        assert holder.load_current().version == holder.pointers.current("default")
    finally:
        backends.close()
