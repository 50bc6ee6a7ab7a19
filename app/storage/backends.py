"""The one place choosing where jobs and registry pointers live: embedded or PostgreSQL.

``CLOSECAST_DATABASE_URL`` unset: the SQLite job store in the model dir and the pointer files beside the
bundles (one machine; today's behaviour). Set to ``postgresql://…``: both in PostgreSQL (``pg.py``,
``pg_jobs.py``, ``pg_pointers.py`` beside this module), shared by API replicas and workers on any machine
that mounts the models volume. psycopg is imported only in the second case, so the embedded install needs no
database driver. With ``CLOSECAST_MODEL_STORE=s3://…`` too, nothing is shared but the database and the bucket:
bundles come from the bucket into each process's own model dir (a cache), a job's data travels through it
(``job_inputs.py``, ``s3.py``), and an empty bucket is seeded at start (boto3 is imported only in that case).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import REPO_MODELS_DIR, Settings
from app.inference.holder import watch_pointer
from app.inference.models import LoadedModels
from app.storage.job_store import JOBS_DIR, JobStore
from app.storage.sqlite_jobs import DB_FILE, SQLiteJobStore
from closecast.objectstore import ObjectStore, StoreRegistry, seed_store

if TYPE_CHECKING:
    from app.storage.pg import Database

log = logging.getLogger(__name__)

SEED_WAIT_S = 600  # longest a process waits for another to finish seeding an empty object store


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


def open_object_store(settings: Settings) -> ObjectStore | None:
    """The bucket of ``CLOSECAST_MODEL_STORE`` (boto3 imported only then), or None without one."""
    if settings.model_store is None:
        return None
    from app.storage.s3 import S3Store

    return S3Store(settings.model_store)


def _try_lock(conn: Any, name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s)) AS ok", (name,)).fetchone()
    return bool(row and row["ok"])


def seed_object_store(settings: Settings, bundles: StoreRegistry, db: Database) -> None:
    """An empty store takes the registry of ``CLOSECAST_DEFAULT_MODEL_DIR``, else the package's models.

    Under a database advisory lock: processes starting together wait for the one seeding, so none reads a
    half-seeded store (a version uploaded, its pointer copy not yet)."""
    source = settings.default_model_dir or REPO_MODELS_DIR
    with db.connection() as conn:
        deadline = time.monotonic() + SEED_WAIT_S  # polled: a blocking wait would hit the lock timeout
        while not _try_lock(conn, "closecast seed store"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"another process has been seeding the object store for {SEED_WAIT_S} s")
            time.sleep(0.2)
        try:
            seeded = seed_store(bundles, source, settings.default_model)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", ("closecast seed store",))
    if seeded:
        log.info("seeded the empty object store with %s from %s", ", ".join(seeded), source)


def build_backends(settings: Settings, models: LoadedModels, role: str = "api") -> Backends:
    """The backends ``settings`` ask for; with a database, every model's holder reads its pointers there.

    ``role`` names the process to PostgreSQL (``closecast-<role>@<host>``). The watcher follows the default
    model (polling the files), or with a database every loaded model as soon as its promotion is notified;
    the other loaded models also poll their pointers through the same store (``watch_models``)."""
    interval = settings.reload_interval_s
    holder = models.default
    if settings.database_url is None:
        return Backends(
            kind="embedded",
            store=embedded_store(settings.model_dir, settings.job_store_timeout_s),
            watcher=partial(watch_pointer, holder, interval),
        )
    from app.storage.pg import Database
    from app.storage.pg_access import optuna_access
    from app.storage.pg_jobs import PostgresJobStore  # psycopg only when asked for
    from app.storage.pg_pointers import PostgresPointers, follow_promotions
    from app.storage.pg_seed import seed_pointers

    db = Database(
        settings.database_url.get_secret_value(),
        settings.db_pool_size,
        settings.job_store_timeout_s,
        role,  # `api` or `worker`: each connection's application_name
        optuna_access(settings),
    )
    objects = open_object_store(settings)
    bundles = StoreRegistry(objects, settings.model_dir) if objects is not None else None
    pointers = PostgresPointers(db, models.files, bundles)
    models.use_pointers(pointers, bundles)
    store: JobStore = PostgresJobStore(db)
    if objects is not None:
        from app.storage.job_inputs import StoreInputsJobStore

        store = StoreInputsJobStore(db, objects, settings.model_dir / JOBS_DIR)

    def open_database() -> None:
        db.open()
        if bundles is not None:
            seed_object_store(settings, bundles, db)
        seed_pointers(pointers, models.names())

    def close_database() -> None:
        pointers.close()
        db.close()

    return Backends(
        kind="postgresql" if objects is None else "postgresql+s3",
        store=store,
        watcher=partial(follow_promotions, models, pointers, interval),
        open=open_database,
        close=close_database,
    )
