"""What a job's training is: one CLI process, or, for a tune job with ``"workers": K`` (PostgreSQL backend),
K shards searching one Optuna study in the same database, then one refit.

The job that was submitted (the parent) runs in three stages on the worker that claimed it:

1. it queues K-1 shard jobs (``spec.shard_of`` = its id; each with a copy of the CSV in its own work dir on
   the shared volume) that idle workers claim beside it (``app/storage/pg_jobs.py``), and runs shard 0 itself:
   ``python -m training tune --stage search --study closecast-job-<id> --budget <trials> --shard n``. The
   study is created by whichever shard starts first (``load_if_exists``: one row, one study); the database
   URL reaches the CLI in ``CLOSECAST_TUNE_STORAGE``, never on its command line;
2. once its own search has stopped (the study reached its budget, or ``timeout_s``), shards still queued are
   cancelled (no worker was free: their trials are no longer needed), and it waits for the running ones to
   end: each stops after the trial it is running (``MaxTrialsCallback``: up to K-1 trials over the budget).
   Throughout stages 1 and 2 the parent's worker fails the shards whose worker died, as an idle worker
   would (``JobContext.recover``: at once on the same host, after ``CLOSECAST_JOB_LEASE_S`` on any): with
   every worker busy, nobody else looks. The job goes on with the trials the study has; the killed trial
   is failed by its stale Optuna heartbeat (the shards' grace is the job lease) and run again once, by
   the next trial a shard starts. A shard that outlives the job's time limit is not waited for either;
3. ``--stage refit`` refits the study's best trial into the job's bundle, judged and promoted as any job's.

While it searches and waits, the parent's progress shows the whole study (the most trials done and pruned
any process has reported, the best value), refreshed every ``WATCH_S`` between its own trial ends.
Whatever ends the parent (success, failure, cancel, shutdown) cancels the shards still queued or running;
a shard also cancels itself when it finds its parent ended (a parent whose worker was lost and recovered by
another). Shards take no place in the queue bound (``CLOSECAST_JOB_QUEUE_SIZE``): their parent has one.
"""

from __future__ import annotations

import logging
import shutil
import sys
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from app.config import Settings
from app.jobs.spec import spec_files
from app.jobs.supervisor import Supervisor, time_limit
from app.storage.errors import StoreUnavailable
from app.storage.job_store import CANCELLED, Job, JobStore, Outcome

log = logging.getLogger(__name__)

SHARD_OF = "shard_of"  # in a shard's spec: its parent job's id
POLL_S = 0.5  # while the parent waits for its shards
WATCH_S = 1.0  # while the parent runs its own search beside them
NO_DATABASE = (
    "tune.workers > 1 needs the PostgreSQL backend (CLOSECAST_DATABASE_URL) that every worker shares; "
    "submit it again with workers 1, or on a service with a database"
)


@dataclass(frozen=True)
class JobContext:
    """What a job's training may use of the worker running it (``JobRunner.context`` builds it per job)."""

    settings: Settings
    store: JobStore
    supervisor: Supervisor
    python: str  # the interpreter for ``-m training``
    work_dir: Callable[[str], Path]  # a job id's work dir
    recover: Callable[[], None]  # fail the jobs (shards included) whose worker is gone


def study_name(job_id: str) -> str:
    return f"closecast-job-{job_id}"


def workers_of(spec: dict[str, Any]) -> int:
    return int((spec.get("tune") or {}).get("workers") or 1)


async def train_job(ctx: JobContext, job: Job, work: Path, out: Path) -> Outcome | None:
    """Run the job's training. None when a bundle waits at ``out`` to be judged; else how the job ended (a
    failure, a cancel, or a shard's success: shards write no bundle)."""
    if job.spec.get(SHARD_OF):
        return await _run_shard(ctx, job, work, out)
    if workers_of(job.spec) > 1:
        return await _run_distributed(ctx, job, work, out)
    return await run_process(ctx, job, work, out)


async def run_process(ctx: JobContext, job: Job, work: Path, out: Path) -> Outcome | None:
    """One training CLI for ``job`` (its spec says which command and flags), supervised to its end."""
    try:
        await anyio.to_thread.run_sync(ctx.supervisor.start, ctx.python, job, work, out)
    except OSError as exc:
        return Outcome("failed", error=f"could not start the training process: {exc}")
    return await ctx.supervisor.wait(job, work)


def _stage(job: Job, stage: str, shard: int = 0) -> Job:
    """``job`` as one stage's process sees it: the shared study, its shard index and the stage."""
    return replace(job, spec={**job.spec, "study": study_name(job.id), "shard": shard, "stage": stage})


async def _run_distributed(ctx: JobContext, job: Job, work: Path, out: Path) -> Outcome | None:
    if ctx.settings.database_url is None:  # validation refuses it; a job queued before a backend change
        return Outcome("failed", error=NO_DATABASE)
    started = anyio.current_time()
    shards: list[str] = []
    try:
        await anyio.to_thread.run_sync(enqueue_shards, ctx, job, work, shards)
        log.info("job %s: %d shards queued on study %s", job.id, len(shards), study_name(job.id))
        async with anyio.create_task_group() as group:  # its own search, and the study's progress beside it
            group.start_soon(_watch_shards, ctx, job, shards)
            ended = await run_process(ctx, _stage(job, "search"), work, out)
            group.cancel_scope.cancel()
        if ended is not None:
            return ended
        deadline = started + time_limit(job.spec, ctx.settings)[0]
        ended = await _wait_for_shards(ctx, job, shards, deadline)
        if ended is not None:
            return ended
        return await run_process(ctx, _stage(job, "refit"), work, out)
    finally:
        with anyio.CancelScope(shield=True):  # a shutdown too ends the shards
            await anyio.to_thread.run_sync(cancel_shards, ctx, shards)


def enqueue_shards(ctx: JobContext, job: Job, work: Path, shards: list[str]) -> None:
    """Queue shards 1..K-1 of ``job``, each with a copy of its CSVs; their ids are appended to ``shards`` as
    they are queued (so a failure half-way still cancels those). They skip the queue bound: the parent
    already took its place."""
    for n in range(1, workers_of(job.spec)):
        shard_id = uuid.uuid4().hex
        shard_work = ctx.work_dir(shard_id)
        shard_work.mkdir(parents=True)
        for name in spec_files(job.spec):
            shutil.copyfile(work / name, shard_work / name)
        spec = {**_stage(job, "search", n).spec, SHARD_OF: job.id}
        progress = dict(job.progress or {})
        ctx.store.enqueue(shard_id, job.name, "never", spec, progress, sys.maxsize, job.model)
        shards.append(shard_id)


def cancel_shards(ctx: JobContext, shards: list[str]) -> None:
    """Cancel the shards not yet ended: queued ones at once (their work dirs removed), running ones by flag
    (their workers kill them). A database that is down: each shard cancels itself once it sees the parent
    ended."""
    for shard_id in shards:
        with suppress(StoreUnavailable):
            ended = ctx.store.request_cancel(shard_id)
            if ended is not None and ended.status == "cancelled" and ended.started_at is None:
                shutil.rmtree(ctx.work_dir(shard_id), ignore_errors=True)


async def _watch_shards(ctx: JobContext, job: Job, shards: list[str]) -> None:
    """Beside the parent's own search: every ``WATCH_S``, the shards' reports onto its progress (between its
    own trial ends) and the shards whose workers died failed. A database down for now: the next look."""
    while True:
        await anyio.sleep(WATCH_S)
        with suppress(StoreUnavailable):
            await anyio.to_thread.run_sync(_refresh, ctx, job, shards)


async def _wait_for_shards(ctx: JobContext, job: Job, shards: list[str], deadline: float) -> Outcome | None:
    """Stage 2: cancel the shards nobody claimed, wait for the running ones (showing the study's progress on
    the parent); a cancel of the parent ends the job, the time limit or lost shards do not."""
    await anyio.to_thread.run_sync(_cancel_unclaimed, ctx, shards)
    while True:
        if await anyio.to_thread.run_sync(ctx.store.cancel_requested, job.id):
            return Outcome("cancelled", error=CANCELLED)
        found = await anyio.to_thread.run_sync(_refresh, ctx, job, shards)
        waiting = [s for s in found if not s.finished]
        if not waiting:
            return None
        if anyio.current_time() > deadline:
            log.warning("job %s: %d shards still running at the time limit; refitting", job.id, len(waiting))
            return None
        await anyio.sleep(POLL_S)


def _cancel_unclaimed(ctx: JobContext, shards: list[str]) -> None:
    """The shards still queued: no worker was free for them, and the study needs their trials no more."""
    unclaimed = [s for s in shards if (job := ctx.store.get(s)) is not None and job.status == "queued"]
    cancel_shards(ctx, unclaimed)
    if unclaimed:
        log.info("%d shards were never claimed (no worker free); cancelled", len(unclaimed))


def _refresh(ctx: JobContext, job: Job, shards: list[str]) -> list[Job]:
    """The shards now, once those whose worker is gone are failed (the parent's worker is busy: no idle
    worker may be looking) and their reports are copied onto the parent's progress."""
    ctx.recover()  # same host: its process is gone, at once; any host: once its lease is too old
    store = ctx.store
    found = [s for s in map(store.get, shards) if s is not None]
    parent = store.get(job.id)
    if parent is not None and not parent.finished:
        progress = study_progress(parent.progress or {}, [s.progress or {} for s in found])
        if progress != parent.progress:
            store.set_progress(job.id, progress)
    return found


def study_progress(own: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, Any]:
    """The parent's progress with the whole study's counts: each process reports the study as it saw it
    at its last trial's end, so the largest counts and the lowest best value are the latest."""
    every = [own, *others]
    done = max((p.get("trials_done") or 0 for p in every), default=0)
    pruned = max((p.get("trials_pruned") or 0 for p in every), default=0)
    values = [p["best_value"] for p in every if p.get("best_value") is not None]
    return {**own, "trials_done": done, "trials_pruned": pruned, "best_value": min(values, default=None)}


async def _run_shard(ctx: JobContext, job: Job, work: Path, out: Path) -> Outcome:
    """A shard: its search, stopped if its parent ends first; it succeeds without a bundle."""
    async with anyio.create_task_group() as group:
        group.start_soon(_follow_parent, ctx, job)
        ended = await run_process(ctx, job, work, out)
        group.cancel_scope.cancel()
    if ended is not None and ended.status == "cancelled":
        with suppress(StoreUnavailable):
            why = await anyio.to_thread.run_sync(_parent_ended, ctx.store, job)
            if why is not None:
                return Outcome("cancelled", error=f"cancelled: its parent job {job.spec[SHARD_OF]} {why}")
    return ended or Outcome("succeeded")


def _parent_ended(store: JobStore, job: Job) -> str | None:
    """How the shard's parent ended ("ended (failed)", "is gone"), or None while it runs."""
    parent = store.get(job.spec[SHARD_OF])
    if parent is None:
        return "is gone"
    return f"ended ({parent.status})" if parent.finished else None


async def _follow_parent(ctx: JobContext, job: Job) -> None:
    """Every heartbeat: once the parent has ended (or is gone), cancel this shard: its supervisor kills it."""
    while True:
        await anyio.sleep(ctx.settings.job_heartbeat_s)
        with suppress(StoreUnavailable):
            if await anyio.to_thread.run_sync(_parent_ended, ctx.store, job) is not None:
                await anyio.to_thread.run_sync(ctx.store.request_cancel, job.id)
                return
