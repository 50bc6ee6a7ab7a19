"""The job store in SQLite (stdlib ``sqlite3``), shared by every worker process that serves one model dir.

    <model_dir>/jobs.sqlite        one row per job (WAL mode: readers never wait for the writer)

Every change is one short transaction on its own connection, so the store is safe from any thread and any
process. ``claim`` takes SQLite's write lock first (``BEGIN IMMEDIATE``) and checks that no job of the model
is running, so two workers never start two; a partial unique index on ``model`` where ``status = 'running'``
makes a second running row impossible even for a careless caller.

Locks are waited on for ``timeout_s`` only (2 s by default), then ``StoreUnavailable`` says the store is
locked; the old 30 s wait hung ``POST /train`` and then blamed permissions. A store deleted under a running
service is created again on the next use (stale ``-wal``/``-shm`` files removed first, so they cannot replay
into the new file); the runner puts its running job back with ``restore``.

The queries both backends share are ``sql_jobs.py``'s; this module creates the file and its schema, and
claims (the write lock taken first, then the check that no job of the model runs).
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.storage.errors import StoreFull, StoreUnavailable
from app.storage.job_store import DEFAULT_MODEL, Job, Owner, now_iso
from app.storage.sql_jobs import Dialect, SQLJobStore

log = logging.getLogger(__name__)

DB_FILE = "jobs.sqlite"  # in the model dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    status           TEXT    NOT NULL
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    name             TEXT    NOT NULL,
    promote          TEXT    NOT NULL,
    spec             TEXT    NOT NULL,  -- JSON: csv, column, date_column, rows, params
    progress         TEXT,              -- JSON: epoch, epochs, train_loss, val_loss
    result           TEXT,              -- JSON: version, metrics, promoted, reason
    error            TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    owner_pid        INTEGER,           -- the lease: the worker process running the job ...
    owner_host       TEXT,              -- ... on this host and boot (pids mean nothing elsewhere),
    owner_started    TEXT,              -- ... started at this time (a recycled pid is another process),
    owner_token      TEXT,              -- ... in this runner run (a restarted runner or process reuses pids)
    heartbeat_at     REAL,              -- unix time the owner last renewed the lease
    child_pid        INTEGER,           -- the training subprocess (leader of its own process group)
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    model            TEXT    NOT NULL DEFAULT 'default'  -- the model name the job trains
);
"""
_INDEXES = """
DROP INDEX IF EXISTS one_running_job;
CREATE UNIQUE INDEX IF NOT EXISTS one_running_job_per_model ON jobs (model) WHERE status = 'running';
"""
DIALECT = Dialect(
    placeholder="?",
    json_in=json.dumps,
    json_out=json.loads,
    same="IS",
    submitted="json_extract(spec, '$.shard_of') IS NULL",  # not a tune job's shard (PostgreSQL only has them)
    clock=None,  # the worker's clock: one machine
    lost_race=sqlite3.IntegrityError,
)


def failure_kind(exc: BaseException) -> str:
    """What is wrong with the store, from an ``sqlite3`` or ``OSError``: locked, read-only, missing, ..."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # primary result code
    text = str(exc).lower()
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text or "busy" in text:
        return "locked"
    oserr = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code == sqlite3.SQLITE_READONLY or "readonly" in text or oserr in (errno.EROFS, errno.EACCES):
        return "read-only"
    if code == sqlite3.SQLITE_CANTOPEN or "no such table" in text or "unable to open" in text:
        return "missing"
    if isinstance(exc, FileNotFoundError):
        return "missing"
    damaged = "malformed" in text or "not a database" in text
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or damaged:
        return "damaged"
    return "failed"


class SQLiteJobStore(SQLJobStore):
    """The job table of one model dir (implements ``JobStore``). Cheap to build; ``open()`` creates it."""

    dialect = DIALECT

    def __init__(self, path: Path, timeout_s: float = 2.0) -> None:
        self.path = path
        self.name = path.name
        self.timeout_s = timeout_s
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file this store opened

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The domain error for ``exc`` (its text carries no path: ``strerror`` for an ``OSError``)."""
        detail = (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else str(exc)
        return StoreUnavailable(failure_kind(exc), self.name, detail)

    @contextmanager
    def _connect(self, reopen: bool = True) -> Iterator[sqlite3.Connection]:
        if reopen:
            self._reopen_if_replaced()
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)  # autocommit
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from exc
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        except sqlite3.Error as exc:
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_FULL:
                raise StoreFull(self.name, str(exc)) from exc  # the caller's 507, as any full disk
            raise self.unavailable(exc) from exc
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def _reopen_if_replaced(self) -> None:
        """Once opened: a store deleted (or replaced) under the service is created again, and said so."""
        if self._identity is not None and self._stat() != self._identity:
            log.warning("the job store %s was deleted or replaced; opening a new one", self.name)
            self._identity = None
            self.open()

    def exists(self) -> bool:
        return self.path.exists()

    def open(self) -> None:
        """Create the database and its schema if needed (idempotent, safe from several processes)."""
        if self._identity is not None and self._identity == self._stat():
            return  # opened already, and still the same file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # journals of a deleted store must not replay into a new one
                for suffix in ("-wal", "-shm", "-journal"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError as exc:
            raise self.unavailable(exc) from exc
        with self._connect(reopen=False) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "model" not in columns:  # a store from before named models
                conn.execute("ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT 'default'")
            conn.executescript(_INDEXES)
        self._identity = self._stat()

    def claim(self, owner: Owner, model: str = DEFAULT_MODEL) -> Job | None:
        """Start the oldest queued job of ``model`` for ``owner``, unless one of its jobs runs (atomic)."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE status = 'running' AND model = ?", (model,)).fetchone():
                return None
            row = conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND model = ? ORDER BY seq LIMIT 1", (model,)
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ?, owner_pid = ?, "
                "owner_host = ?, owner_started = ?, owner_token = ? WHERE id = ?",
                (now_iso(), time.time(), owner.pid, owner.host, owner.started, owner.token, row["id"]),
            )
            claimed = conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return self._job(claimed)
