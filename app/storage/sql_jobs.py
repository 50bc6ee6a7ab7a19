"""The ``JobStore`` contract in SQL, once, for both backends: a subclass gives its connections, its
``Dialect`` (placeholders, JSON, the null-safe comparison, the clock, its unique-violation error) and what
truly differs (creating the schema, claiming the next job).

    SQLiteJobStore    (sqlite_jobs.py)  embedded: ``?``, JSON as text, the caller's clock
    PostgresJobStore  (pg_jobs.py)      scale-out: ``%s``, JSONB, the database's clock, SKIP LOCKED claims

Queries are written with ``?`` and turned into the dialect's placeholder; booleans are written ``TRUE``,
which SQLite (3.23+) reads as 1. Both tables have the same columns (``app/storage/pg.py`` and
``sqlite_jobs.py`` create them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from app.storage.errors import QueueFull
from app.storage.job_store import DEFAULT_MODEL, KEEP_FINISHED, TERMINAL, Job, Lease, Owner, now_iso

COLUMNS = (
    "id, status, name, promote, spec, progress, result, error, created_at, started_at, finished_at, "
    "owner_pid, owner_host, owner_started, owner_token, heartbeat_at, child_pid, cancel_requested, model"
)


@dataclass(frozen=True)
class Dialect:
    """What differs in the SQL text and values between the two databases."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    json_in: Callable[[Any], Any]  # a dict -> what the driver stores (text, or JSONB)
    json_out: Callable[[Any], Any]  # what the driver returns -> a dict
    same: str  # null-safe equality: "IS" (SQLite) or "IS NOT DISTINCT FROM" (PostgreSQL)
    submitted: str  # a job users submitted, not a tune job's shard (``spec.shard_of`` unset)
    clock: str | None  # SQL for the unix time now; None: the caller's ``time.time()`` as a parameter
    lost_race: type[Exception]  # a unique index said no (another job of the model runs)

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)


class SQLJobStore:
    """The job table through a ``Dialect``; subclasses add ``open``, ``exists``, ``claim`` and connections."""

    name: str
    dialect: Dialect

    def _connect(self) -> AbstractContextManager[Any]:
        """One autocommit connection; any failure of the store raises ``StoreUnavailable``."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Any]:
        """One transaction, committed at the end of the block, rolled back on any exception."""
        raise NotImplementedError

    def _lock_queue(self, conn: Any) -> None:
        """In ``enqueue``'s transaction: hold the queue bound's lock (SQLite's write lock already does)."""

    def _execute(self, conn: Any, text: str, params: tuple[Any, ...] = ()) -> Any:
        return conn.execute(self.dialect.sql(text), params)

    def _clock(self) -> tuple[str, tuple[Any, ...]]:
        """SQL for the time of a heartbeat, and its parameters."""
        clock = self.dialect.clock
        return ("?", (time.time(),)) if clock is None else (clock, ())

    def _job(self, row: Mapping[str, Any]) -> Job:
        def load(value: Any) -> Any:
            return None if value is None else self.dialect.json_out(value)

        owner = None
        if row["owner_pid"] is not None:
            owner = Owner(row["owner_pid"], row["owner_host"], row["owner_started"], row["owner_token"])
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
            owner=owner,
            heartbeat_at=row["heartbeat_at"],
            child_pid=row["child_pid"],
            cancel_requested=bool(row["cancel_requested"]),
            model=row["model"],
        )

    def _json(self, value: Any) -> Any:
        return None if value is None else self.dialect.json_in(value)

    def _one(self, conn: Any, job_id: str) -> Job | None:
        row = self._execute(conn, "SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._connect() as conn:
            return self._one(conn, job_id)

    def recent(self, limit: int = 20) -> list[Job]:
        """Newest first."""
        with self._connect() as conn:
            rows = self._execute(conn, "SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [self._job(r) for r in rows]

    def with_status(self, status: str, model: str | None = None) -> list[Job]:
        """Oldest first; every model's unless ``model`` is given."""
        query, params = "SELECT * FROM jobs WHERE status = ?", [status]
        if model is not None:
            query, params = f"{query} AND model = ?", [status, model]
        with self._connect() as conn:
            rows = self._execute(conn, f"{query} ORDER BY seq", tuple(params)).fetchall()
        return [self._job(r) for r in rows]

    def count(self, status: str) -> int:
        query = f"SELECT count(*) AS n FROM jobs WHERE status = ? AND {self.dialect.submitted}"
        with self._connect() as conn:
            row = self._execute(conn, query, (status,)).fetchone()
        return int(row["n"]) if row else 0

    def cancel_requested(self, job_id: str) -> bool:
        with self._connect() as conn:
            row = self._execute(conn, "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    # --- writing -----------------------------------------------------------------------------------------

    def enqueue(
        self,
        job_id: str,
        name: str,
        promote: str,
        spec: dict[str, Any],
        progress: dict[str, Any],
        limit: int,
        model: str = DEFAULT_MODEL,
    ) -> Job:
        """Add a queued job, or raise ``QueueFull`` when ``limit`` submitted jobs are already waiting (a tune
        job's shards are not counted: its parent took the one place). Finished jobs beyond the newest
        ``KEEP_FINISHED`` rows are pruned."""
        with self._transaction() as conn:
            self._lock_queue(conn)
            queued = f"SELECT count(*) AS n FROM jobs WHERE status = 'queued' AND {self.dialect.submitted}"
            row = self._execute(conn, queued).fetchone()
            if row and int(row["n"]) >= limit:
                raise QueueFull(limit)
            self._execute(
                conn,
                "INSERT INTO jobs (id, status, name, promote, spec, progress, created_at, model) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, name, promote, self._json(spec), self._json(progress), now_iso(), model),
            )
            self._execute(
                conn,
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND seq < "
                "(SELECT coalesce(min(seq), 0) FROM (SELECT seq FROM jobs ORDER BY seq DESC LIMIT ?) AS k)",
                (KEEP_FINISHED,),
            )
            created = self._one(conn, job_id)
        assert created is not None
        return created

    def heartbeat(self, job_id: str, owner: Owner) -> Lease:
        """Renew ``owner``'s lease on its running job: held, lost (taken over) or missing (store new)."""
        clock, clock_params = self._clock()
        with self._connect() as conn:
            renewed = self._execute(
                conn,
                f"UPDATE jobs SET heartbeat_at = {clock} "
                "WHERE id = ? AND status = 'running' AND owner_token = ?",
                (*clock_params, job_id, owner.token),
            ).rowcount
            if renewed:
                return "held"
            found = self._execute(conn, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return "lost" if found else "missing"

    def restore(self, job: Job) -> bool:
        """Put back a job the store lost; False when another job of its model runs (or it is back)."""
        owner = job.owner
        values = (
            *(job.id, job.status, job.name, job.promote, self._json(job.spec), self._json(job.progress)),
            *(self._json(job.result), job.error, job.created_at, job.started_at, job.finished_at),
            *((owner.pid, owner.host, owner.started, owner.token) if owner else (None,) * 4),
            *(job.heartbeat_at, job.child_pid, job.cancel_requested, job.model),
        )
        insert = f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
        with self._connect() as conn:
            try:
                cursor = self._execute(conn, insert + "ON CONFLICT (id) DO NOTHING", values)
            except self.dialect.lost_race:  # a unique index: another job of the model runs
                return False
        return bool(cursor.rowcount == 1)

    def recover_stale(self, model: str, gone: Callable[[Job], str | None]) -> list[tuple[Job, str]]:
        """Fail the running jobs of ``model`` whose owner ``gone`` says is gone, with its reason as the error.

        A job is failed only if its lease did not change meanwhile (same owner token, same heartbeat), so an
        owner that renewed its lease after the look keeps its job.
        """
        same = self.dialect.same
        recovered = []
        for job in self.with_status("running", model):
            reason = gone(job)
            if reason is None:
                continue
            token = job.owner.token if job.owner else None
            with self._connect() as conn:
                changed = self._execute(
                    conn,
                    "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? "
                    f"AND status = 'running' AND owner_token {same} ? AND heartbeat_at {same} ?",
                    (reason, now_iso(), job.id, token, job.heartbeat_at),
                ).rowcount
            if changed:
                recovered.append((job, reason))
        return recovered

    def set_child(self, job_id: str, pid: int) -> None:
        with self._connect() as conn:
            self._execute(conn, "UPDATE jobs SET child_pid = ? WHERE id = ?", (pid, job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._connect() as conn:
            self._execute(conn, "UPDATE jobs SET progress = ? WHERE id = ?", (self._json(progress), job_id))

    def request_cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is flagged for its owner to kill."""
        with self._transaction() as conn:
            self._execute(
                conn,
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'cancelled by request' "
                "WHERE id = ? AND status = 'queued'",
                (now_iso(), job_id),
            )
            self._execute(
                conn, "UPDATE jobs SET cancel_requested = TRUE WHERE id = ? AND status = 'running'", (job_id,)
            )
            return self._one(conn, job_id)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of an active job; False (and no change) when it had already ended or is gone."""
        if status not in TERMINAL:
            raise ValueError(f"status {status!r} is not one a job ends in; use one of {TERMINAL}")
        with self._connect() as conn:
            cursor = self._execute(
                conn,
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, self._json(result), error, now_iso(), job_id),
            )
        return bool(cursor.rowcount == 1)
