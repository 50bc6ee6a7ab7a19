"""Retrain jobs in SQLite (stdlib ``sqlite3``), shared by every worker process that serves one model dir.

    <model_dir>/jobs.sqlite        one row per job (WAL mode: readers never wait for the writer)

Every change is one short transaction on its own connection, so the store is safe from any thread and any
process. ``claim`` takes SQLite's write lock first (``BEGIN IMMEDIATE``) and checks that no job is running,
so two workers never start two jobs; a partial unique index on ``status = 'running'`` makes a second
running row impossible even for a careless caller. Pure stdlib: a test can hammer it from plain processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.jobs.errors import QueueFull

TERMINAL = ("succeeded", "failed", "cancelled")
KEEP_FINISHED = 1000  # finished jobs kept for GET /train; older ones are pruned on enqueue

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
    owner_pid        INTEGER,           -- the worker process running the job ...
    owner_host       TEXT,              -- ... on this host and boot (pids mean nothing elsewhere),
    owner_started    TEXT,              -- ... started at this time (a recycled pid is another process),
    owner_token      TEXT,              -- ... in this runner (a restarted process may reuse the pid)
    heartbeat_at     REAL,              -- unix time the owner last said it is alive
    child_pid        INTEGER,           -- the training subprocess (leader of its own process group)
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS one_running_job ON jobs (status) WHERE status = 'running';
"""


@dataclass(frozen=True)
class Owner:
    """The worker process running a job, identified well enough to tell later whether it is gone."""

    pid: int
    host: str
    started: str | None
    token: str


@dataclass(frozen=True)
class Job:
    """One row of the store, JSON columns decoded."""

    id: str
    status: str
    name: str
    promote: str
    spec: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    owner: Owner | None
    heartbeat_at: float | None
    child_pid: int | None
    cancel_requested: bool

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


CANCELLED = "cancelled by request"


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as ``JobStore.finish`` records it: a terminal status, its result or its error."""

    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _job(row: sqlite3.Row) -> Job:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return Job(
        id=row["id"],
        status=row["status"],
        name=row["name"],
        promote=row["promote"],
        spec=load(row["spec"]),
        progress=load(row["progress"]),
        result=load(row["result"]),
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        owner=None
        if row["owner_pid"] is None
        else Owner(row["owner_pid"], row["owner_host"], row["owner_started"], row["owner_token"]),
        heartbeat_at=row["heartbeat_at"],
        child_pid=row["child_pid"],
        cancel_requested=bool(row["cancel_requested"]),
    )


class JobStore:
    """The job table of one model dir. Cheap to build; ``open()`` creates the file and the schema."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; BEGIN by hand
        conn.row_factory = sqlite3.Row
        try:
            yield conn
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

    def open(self) -> None:
        """Create the database and its schema if needed (idempotent, safe from several processes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def recent(self, limit: int = 20) -> list[Job]:
        """Newest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def with_status(self, status: str) -> list[Job]:
        """Oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status = ? ORDER BY seq", (status,)).fetchall()
        return [_job(r) for r in rows]

    def count(self, status: str) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0])

    # --- writing -----------------------------------------------------------------------------------------

    def enqueue(
        self, job_id: str, name: str, promote: str, spec: dict[str, Any], progress: dict[str, Any], limit: int
    ) -> Job:
        """Add a queued job, or raise ``QueueFull`` when ``limit`` jobs are already waiting."""
        with self._transaction() as conn:
            waiting = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
            if waiting >= limit:
                raise QueueFull(limit)
            conn.execute(
                "INSERT INTO jobs (id, status, name, promote, spec, progress, created_at) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, name, promote, json.dumps(spec), json.dumps(progress), now_iso()),
            )
            conn.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND seq NOT IN "
                "(SELECT seq FROM jobs ORDER BY seq DESC LIMIT ?)",
                (KEEP_FINISHED,),
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row)

    def claim(self, owner: Owner) -> Job | None:
        """Start the oldest queued job for ``owner``, unless a job is running anywhere (atomic)."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE status = 'running'").fetchone():
                return None
            row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ?, owner_pid = ?, "
                "owner_host = ?, owner_started = ?, owner_token = ? WHERE id = ?",
                (now_iso(), time.time(), owner.pid, owner.host, owner.started, owner.token, row["id"]),
            )
            claimed = conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return _job(claimed)

    def set_child(self, job_id: str, pid: int) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE jobs SET child_pid = ? WHERE id = ?", (pid, job_id))

    def beat(self, job_id: str) -> None:
        """The owner is alive (workers on other hosts can only tell it this way)."""
        with self._connect() as conn:
            conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (time.time(), job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (json.dumps(progress), job_id))

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def request_cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is flagged for its owner to kill."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'cancelled by request' "
                "WHERE id = ? AND status = 'queued'",
                (now_iso(), job_id),
            )
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of an active job; False (and no change) when it had already ended."""
        if status not in TERMINAL:
            raise ValueError(f"status {status!r} is not one a job ends in; use one of {TERMINAL}")
        with self._connect() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, None if result is None else json.dumps(result), error, now_iso(), job_id),
            )
            return cursor.rowcount == 1
