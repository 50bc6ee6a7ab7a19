"""The job store interface: what the runner and the API need from wherever jobs are kept.

``JobStore`` is a Protocol so a second backend (PostgreSQL for scale-out) can stand in for the SQLite one
(``app/storage/sqlite_jobs.py``) without the runner changing. Jobs belong to a model name (``"default"`` until
named models exist); at most one job per model runs at a time across every worker sharing the store.

A running job carries a lease: its owner (pid, host and boot, process start time, runner token) and the
time of its last heartbeat. The owner renews the lease every ``CLOSECAST_JOB_HEARTBEAT_S``; any worker's
runner recovers a running job whose owner is gone (same host: the process or the runner is dead; any host:
no heartbeat for ``CLOSECAST_JOB_LEASE_S``) by failing it with a "worker lost" reason. A job is failed, not
requeued: a job that kills its worker would otherwise be retried forever, and its data went with its work dir.

Every method raises ``StoreUnavailable`` (503, with the cause: locked, read-only, missing, damaged) when
the store cannot be used, quickly: no request waits more than ``CLOSECAST_JOB_STORE_TIMEOUT_S`` on a lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

TERMINAL = ("succeeded", "failed", "cancelled")
KEEP_FINISHED = 1000  # finished jobs kept for GET /train; older ones are pruned on enqueue
DEFAULT_MODEL = "default"
CANCELLED = "cancelled by request"
JOBS_DIR = ".jobs"  # under the model dir: each job's work dir (its data, the bundle it writes)

# What a heartbeat finds: the lease is still ours, another worker took the job over (it failed it as lost),
# or the row is gone (the store was deleted and recreated): the owner may ``restore`` it.
Lease = Literal["held", "lost", "missing"]


@dataclass(frozen=True)
class Owner:
    """The worker process running a job, identified well enough to tell later whether it is gone."""

    pid: int
    host: str
    started: str | None
    token: str


@dataclass(frozen=True)
class Job:
    """One job, JSON fields decoded."""

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
    model: str = DEFAULT_MODEL

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as ``JobStore.finish`` records it: a terminal status, its result or its error."""

    status: str
    result: dict[str, Any] | None = None
    error: str | None = None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JobStore(Protocol):
    """Where the jobs of one model dir live, shared by every worker serving it."""

    name: str  # how answers and logs name the store (never a filesystem path)

    def open(self) -> None:
        """Create the store (and its schema) if needed; idempotent, safe from several processes."""

    def exists(self) -> bool:
        """Whether the store has been created (a service that never trained has none)."""

    def get(self, job_id: str) -> Job | None: ...

    def recent(self, limit: int = 20) -> list[Job]:
        """Newest first."""

    def with_status(self, status: str, model: str | None = None) -> list[Job]:
        """Oldest first; every model's unless ``model`` is given."""

    def count(self, status: str) -> int:
        """Jobs with ``status`` that users submitted: a tune job's shards (``spec.shard_of``) belong to their
        parent and take no place of their own in the queue bound."""

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
        """Add a queued job, or raise ``QueueFull`` when ``limit`` jobs (as ``count`` counts) already wait."""

    def claim(self, owner: Owner, model: str = DEFAULT_MODEL) -> Job | None:
        """Start the oldest queued job of ``model`` for ``owner``, unless one of its jobs runs (atomic)."""

    def heartbeat(self, job_id: str, owner: Owner) -> Lease:
        """Renew ``owner``'s lease on a running job; what it found (see ``Lease``)."""

    def restore(self, job: Job) -> bool:
        """Put back a job the store lost (deleted and recreated); False when another job of its model runs."""

    def recover_stale(self, model: str, gone: Callable[[Job], str | None]) -> list[tuple[Job, str]]:
        """Fail the running jobs of ``model`` whose owner ``gone`` says is gone (its reason as the error)."""

    def set_child(self, job_id: str, pid: int) -> None: ...

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None: ...

    def cancel_requested(self, job_id: str) -> bool: ...

    def request_cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is flagged for its owner to kill."""

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of an active job; False (and no change) when it had already ended or is gone."""


def claim_any(store: JobStore, owner: Owner, default: str = DEFAULT_MODEL) -> Job | None:
    """Start the next queued job of any model: models take turns in the order their oldest job arrived
    (a worker runs one job at a time; the store runs at most one per model across workers). The default
    model is always tried, so every look takes the write lock once and a locked store is noticed."""
    queued = dict.fromkeys(job.model for job in store.with_status("queued"))
    for model in queued or {default: None}:
        if (job := store.claim(owner, model)) is not None:
            return job
    return None


def recover_stale_all(
    store: JobStore, gone: Callable[[Job], str | None], default: str = DEFAULT_MODEL
) -> list[tuple[Job, str]]:
    """``recover_stale`` for the default model and every model with a running job."""
    running = dict.fromkeys([default, *(job.model for job in store.with_status("running"))])
    return [pair for model in running for pair in store.recover_stale(model, gone)]
