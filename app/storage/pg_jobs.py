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

from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app.storage.job_store import DEFAULT_MODEL, Job, Owner, now_iso
from app.storage.pg import STORE_NAME, Database
from app.storage.sql_jobs import Dialect, SQLJobStore

_NOW = "extract(epoch from clock_timestamp())"
# A second running row of a model (the partial unique index): another worker won the race.
_LostRace = psycopg.errors.UniqueViolation

DIALECT = Dialect(
    placeholder="%s",
    json_in=Jsonb,
    json_out=lambda value: value,  # psycopg decodes JSONB itself
    same="IS NOT DISTINCT FROM",
    submitted="spec->>'shard_of' IS NULL",  # a job users submitted, not a tune job's shard (shards.py)
    clock=_NOW,  # the database's clock: every lease carries one clock
    lost_race=_LostRace,
)

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


class PostgresJobStore(SQLJobStore):
    """The ``jobs`` table of one database (implements ``JobStore``)."""

    name = STORE_NAME
    dialect = DIALECT

    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self) -> None:
        """The schema is created when the process starts (``Database.open``): nothing to do per job."""

    def exists(self) -> bool:
        return True  # the table exists from the process's start; a database that is down raises on use

    def _connect(self) -> AbstractContextManager[Any]:
        return self.db.connection()

    def _transaction(self) -> AbstractContextManager[Any]:
        return self.db.transaction()

    def _lock_queue(self, conn: Any) -> None:
        """The queue bound is checked under a transaction-level advisory lock, so two replicas enqueueing at
        once cannot both take the last place."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('closecast enqueue'))")

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
        return None if claimed is None else self._job(claimed)
