"""The one place choosing where jobs and registry pointers live: embedded or PostgreSQL.

``CLOSECAST_DATABASE_URL`` unset: the SQLite job store in the model dir and the pointer files beside the
bundles (one machine; today's behaviour). Set to ``postgresql://…``: both in PostgreSQL (``pg.py``,
``pg_jobs.py``, ``pg_pointers.py`` beside this module), shared by API replicas and workers on any machine
that mounts the models volume. psycopg is imported only in the second case, so the embedded install needs no
database driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from app.config import Settings
from app.inference.holder import watch_pointer
from app.inference.models import LoadedModels
from app.storage.job_store import JobStore
from app.storage.sqlite_jobs import DB_FILE, SQLiteJobStore


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


def build_backends(settings: Settings, models: LoadedModels) -> Backends:
    """The backends ``settings`` ask for; with a database, every model's holder reads its pointers there.

    The watcher follows the default model (notified by the database, or polling the files); the other
    loaded models poll their pointers through the same store (``watch_models``)."""
    interval = settings.reload_interval_s
    holder = models.default
    if settings.database_url is None:
        return Backends(
            kind="embedded",
            store=embedded_store(settings.model_dir, settings.job_store_timeout_s),
            watcher=partial(watch_pointer, holder, interval),
        )
    from app.storage.pg import Database
    from app.storage.pg_jobs import PostgresJobStore  # psycopg only when asked for
    from app.storage.pg_pointers import PostgresPointers, follow_promotions

    db = Database(
        settings.database_url.get_secret_value(), settings.db_pool_size, settings.job_store_timeout_s
    )
    pointers = PostgresPointers(db, models.files)
    models.use_pointers(pointers)

    def open_database() -> None:
        db.open()
        pointers.seed(models.names())

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
