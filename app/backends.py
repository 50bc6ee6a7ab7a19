"""The one place choosing where jobs and registry pointers live: embedded or PostgreSQL.

``CLOSECAST_DATABASE_URL`` unset: the SQLite job store in the model dir and the pointer files beside the
bundles (one machine; today's behaviour). Set to ``postgresql://…``: both in PostgreSQL (``app/pg.py``,
``app/jobs/pg_store.py``, ``app/pg_pointers.py``), shared by API replicas and workers on any machine that
mounts the models volume. psycopg is imported only in the second case, so the embedded install needs no
database driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from app.config import Settings
from app.inference.holder import ModelHolder, watch_pointer
from app.jobs.runner import DB_FILE
from app.jobs.sqlite_store import SQLiteJobStore
from app.jobs.store import JobStore


def _nothing() -> None:
    return None


@dataclass
class Backends:
    """The job store and the pointer watcher of one process, and how to open and close what they hold.

    ``open`` and ``close`` are blocking, run in the lifespan (``open`` before the model loads, since a
    database backend holds the pointer); ``watcher`` is the supervised loop that follows promotions.
    """

    kind: str
    store: JobStore
    watcher: Callable[[], Awaitable[None]]
    open: Callable[[], None] = field(default=_nothing)
    close: Callable[[], None] = field(default=_nothing)


def embedded_store(model_dir: Path, timeout_s: float) -> SQLiteJobStore:
    return SQLiteJobStore(model_dir / DB_FILE, timeout_s)


def build_backends(settings: Settings, holder: ModelHolder) -> Backends:
    """The backends ``settings`` ask for; sets ``holder.pointers`` to the database's when there is one."""
    interval = settings.reload_interval_s
    if settings.database_url is None:
        return Backends(
            kind="embedded",
            store=embedded_store(settings.model_dir, settings.job_store_timeout_s),
            watcher=partial(watch_pointer, holder, interval),
        )
    from app.jobs.pg_store import PostgresJobStore  # psycopg only when asked for
    from app.pg import Database
    from app.pg_pointers import PostgresPointers, follow_promotions
    from closecast.registry import FilePointers

    db = Database(
        settings.database_url.get_secret_value(), settings.db_pool_size, settings.job_store_timeout_s
    )
    pointers = PostgresPointers(db, FilePointers(settings.model_dir))
    holder.pointers = pointers

    def open_database() -> None:
        db.open()
        pointers.seed([holder.model])

    def close_database() -> None:
        pointers.close()
        db.close()

    return Backends(
        kind="postgresql",
        store=PostgresJobStore(db),
        watcher=partial(follow_promotions, holder, pointers, interval),
        open=open_database,
        close=close_database,
    )
