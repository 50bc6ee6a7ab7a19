"""The job store in PostgreSQL (scale-out mode): the same ``JobStore`` contract as the SQLite store, shared by
API replicas and workers on any number of machines.

``claim`` is one transaction: it locks the model's oldest queued row with ``FOR UPDATE SKIP LOCKED`` (two
workers claiming at once never wait on each other and never take the same row) and moves it to ``running``
with the claimer's lease; the partial unique index ``one_running_job_per_model`` makes a second running job
of a model impossible, so a claim that loses that race simply finds nothing. Leases are renewed with the
database's clock (``heartbeat_at`` is ``clock_timestamp()``): every lease carries one clock, compared with
the recovering worker's (clocks kept in sync with NTP).

A queued job's data (its CSV) is not in the database: it lives in the job's work dir on the shared models
volume (``<model_dir>/.jobs/<id>/``) that every replica and worker mounts, as bundles do.

Every failure of the database (down, restarting, a connection cut) is ``StoreUnavailable`` (503) from
``app/storage/pg.py``; the runner notes it and tries again at its next tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app.storage.errors import QueueFull
from app.storage.job_store import DEFAULT_MODEL, KEEP_FINISHED, TERMINAL, Job, Lease, Owner, now_iso
from app.storage.pg import STORE_NAME, Database

_NOW = "extract(epoch from clock_timestamp())"
_COLUMNS = (
    "id, status, name, promote, spec, progress, result, error, created_at, started_at, finished_at, "
    "owner_pid, owner_host, owner_started, owner_token, heartbeat_at, child_pid, cancel_requested, model"
)

_SUBMITTED = "spec->>'shard_of' IS NULL"  # a job users submitted, not a tune job's shard (shards.py)

# The oldest queued job of a model that may start now: a shard while its parent runs, any other job while
# no other job of its model (shards aside) runs. A race past this check is stopped by the unique index.
_CLAIMABLE = """
SELECT q.id FROM jobs q WHERE q.status = 'queued' AND q.model = %s AND CASE
    WHEN q.spec->>'shard_of' IS NOT NULL THEN EXISTS (
        SELECT 1 FROM jobs p WHERE p.id = q.spec->>'shard_of' AND p.status = 'running')
    ELSE NOT EXISTS (
        SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.model = q.model AND r.spec->>'shard_of' IS NULL)
    END
ORDER BY q.seq LIMIT 1 FOR UPDATE OF q SKIP LOCKED
"""


def _job(row: dict[str, Any]) -> Job:
    owner = None
    if row["owner_pid"] is not None:
        owner = Owner(row["owner_pid"], row["owner_host"], row["owner_started"], row["owner_token"])
    return Job(
        id=row["id"],
        status=row["status"],
        name=row["name"],
        promote=row["promote"],
        spec=row["spec"],
        progress=row["progress"],
        result=row["result"],
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


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class PostgresJobStore:
    """The ``jobs`` table of one database (implements ``JobStore``)."""

    name = STORE_NAME

    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self) -> None:
        """The schema is created when the process starts (``Database.open``): nothing to do per job."""

    def exists(self) -> bool:
        return True  # the table exists from the process's start; a database that is down raises on use

    # --- reading -----------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def recent(self, limit: int = 20) -> list[Job]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT %s", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def with_status(self, status: str, model: str | None = None) -> list[Job]:
        query = "SELECT * FROM jobs WHERE status = %s AND (%s::text IS NULL OR model = %s) ORDER BY seq"
        with self.db.connection() as conn:
            rows = conn.execute(query, (status, model, model)).fetchall()
        return [_job(r) for r in rows]

    def count(self, status: str) -> int:
        with self.db.connection() as conn:
            query = f"SELECT count(*) AS n FROM jobs WHERE status = %s AND {_SUBMITTED}"
            row = conn.execute(query, (status,)).fetchone()
        return int(row["n"]) if row else 0

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
        job's shards are not counted: its parent took the one place).

        The queue bound is checked under a transaction-level advisory lock so two replicas enqueueing at
        once cannot both take the last place.
        """
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('closecast enqueue'))")
            queued = f"SELECT count(*) AS n FROM jobs WHERE status = 'queued' AND {_SUBMITTED}"
            row = conn.execute(queued).fetchone()
            if row and int(row["n"]) >= limit:
                raise QueueFull(limit)
            created = conn.execute(
                "INSERT INTO jobs (id, status, name, promote, spec, progress, created_at, model) "
                "VALUES (%s, 'queued', %s, %s, %s, %s, %s, %s) RETURNING *",
                (job_id, name, promote, Jsonb(spec), Jsonb(progress), now_iso(), model),
            ).fetchone()
            conn.execute(
                "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND seq < "
                "(SELECT coalesce(min(seq), 0) FROM (SELECT seq FROM jobs ORDER BY seq DESC LIMIT %s) AS k)",
                (KEEP_FINISHED,),
            )
        assert created is not None
        return _job(created)

    def claim(self, owner: Owner, model: str = DEFAULT_MODEL) -> Job | None:
        """Start the oldest queued job of ``model`` for ``owner``, unless one of its jobs runs (atomic); a
        tune job's shard (``spec.shard_of``) is started while its parent runs, beside it."""
        try:
            with self.db.transaction() as conn:
                row = conn.execute(_CLAIMABLE, (model,)).fetchone()
                if row is None:
                    return None
                claimed = conn.execute(
                    f"UPDATE jobs SET status = 'running', started_at = %s, heartbeat_at = {_NOW}, "
                    "owner_pid = %s, owner_host = %s, owner_started = %s, owner_token = %s "
                    "WHERE id = %s RETURNING *",
                    (now_iso(), owner.pid, owner.host, owner.started, owner.token, row["id"]),
                ).fetchone()
        except _LostRace:
            return None
        return None if claimed is None else _job(claimed)

    def heartbeat(self, job_id: str, owner: Owner) -> Lease:
        with self.db.connection() as conn:
            renewed = conn.execute(
                f"UPDATE jobs SET heartbeat_at = {_NOW} "
                "WHERE id = %s AND status = 'running' AND owner_token = %s",
                (job_id, owner.token),
            ).rowcount
            if renewed:
                return "held"
            found = conn.execute("SELECT 1 FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return "lost" if found else "missing"

    def restore(self, job: Job) -> bool:
        """Put back a job the store lost (a database restored from an older backup)."""
        owner = job.owner
        values = (
            *(job.id, job.status, job.name, job.promote, Jsonb(job.spec), _json(job.progress)),
            *(_json(job.result), job.error, job.created_at, job.started_at, job.finished_at),
            *((owner.pid, owner.host, owner.started, owner.token) if owner else (None,) * 4),
            *(job.heartbeat_at, job.child_pid, job.cancel_requested, job.model),
        )
        placeholders = ", ".join(["%s"] * len(values))
        try:
            with self.db.connection() as conn:
                cursor = conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({placeholders}) ON CONFLICT (id) DO NOTHING",
                    values,
                )
        except _LostRace:
            return False
        return cursor.rowcount == 1

    def recover_stale(self, model: str, gone: Callable[[Job], str | None]) -> list[tuple[Job, str]]:
        """Fail the running jobs of ``model`` whose owner ``gone`` says is gone, unless the lease changed."""
        recovered = []
        for job in self.with_status("running", model):
            reason = gone(job)
            if reason is None:
                continue
            token = job.owner.token if job.owner else None
            with self.db.connection() as conn:
                changed = conn.execute(
                    "UPDATE jobs SET status = 'failed', error = %s, finished_at = %s WHERE id = %s "
                    "AND status = 'running' AND owner_token IS NOT DISTINCT FROM %s "
                    "AND heartbeat_at IS NOT DISTINCT FROM %s",
                    (reason, now_iso(), job.id, token, job.heartbeat_at),
                ).rowcount
            if changed:
                recovered.append((job, reason))
        return recovered

    def set_child(self, job_id: str, pid: int) -> None:
        with self.db.connection() as conn:
            conn.execute("UPDATE jobs SET child_pid = %s WHERE id = %s", (pid, job_id))

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self.db.connection() as conn:
            conn.execute("UPDATE jobs SET progress = %s WHERE id = %s", (Jsonb(progress), job_id))

    def cancel_requested(self, job_id: str) -> bool:
        with self.db.connection() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def request_cancel(self, job_id: str) -> Job | None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = %s, error = 'cancelled by request' "
                "WHERE id = %s AND status = 'queued'",
                (now_iso(), job_id),
            )
            conn.execute(
                "UPDATE jobs SET cancel_requested = TRUE WHERE id = %s AND status = 'running'", (job_id,)
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        if status not in TERMINAL:
            raise ValueError(f"status {status!r} is not one a job ends in; use one of {TERMINAL}")
        with self.db.connection() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = %s, result = %s, error = %s, finished_at = %s "
                "WHERE id = %s AND status IN ('queued', 'running')",
                (status, _json(result), error, now_iso(), job_id),
            )
        return cursor.rowcount == 1


# A second running row of a model (the partial unique index): another worker won the race.
_LostRace = psycopg.errors.UniqueViolation
