"""A running job's lease, seen from the store: whose it is, when its owner counts as gone, and how a job's
end is recorded even when the store lost its row meanwhile.

``JobRunner`` (``runner.py``) drives these on its loop; they are blocking calls on the job store, run off
the event loop. A job whose owner is gone is failed (never requeued: a job that kills its worker would
otherwise be retried forever) and its training process and work dir removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from app.jobs.process import HOST_AND_BOOT, command_line_mentions, process_alive
from app.storage.job_store import Job, JobStore, Lease, Outcome, Owner, now_iso, recover_stale_all

log = logging.getLogger(__name__)

STRAY_AFTER_S = 3600  # a work dir without a job row is removed after this (a request that crashed)

LIVE_TOKENS: set[str] = set()  # runners serving in this process (tests run several apps in one process)


def why_gone(job: Job, lease_s: float) -> str | None:
    """Why ``job``'s owner counts as gone (the job's error), or None while it holds its lease."""
    owner = job.owner
    if owner is None:
        return "worker lost: the job was running without an owner; submit it again"
    here = owner.host == HOST_AND_BOOT
    if here and owner.pid == os.getpid():  # ours, or a dead worker's whose pid this process reuses
        if owner.token in LIVE_TOKENS:
            return None
        return f"worker lost: the job runner of worker process {owner.pid} stopped; submit it again"
    if here and not process_alive(owner.pid, owner.started):
        return (
            f"interrupted by restart: the worker process {owner.pid} that ran this job is gone; "
            "submit it again"
        )
    silent = time.time() - (job.heartbeat_at or 0.0)
    if silent > lease_s:
        return (
            f"worker lost: worker process {owner.pid} did not renew its lease for {silent:.0f} s "
            f"(CLOSECAST_JOB_LEASE_S is {lease_s:g}); submit it again"
        )
    return None


def recover_gone(
    store: JobStore, default_model: str, lease_s: float, work_dir: Callable[[str], Path]
) -> None:
    """Fail the running jobs whose worker is gone, kill their training processes, remove their work dirs."""
    for job, reason in recover_stale_all(store, lambda j: why_gone(j, lease_s), default_model):
        log.warning("job %s: %s", job.id, reason)
        here = job.owner is not None and job.owner.host == HOST_AND_BOOT
        if here and job.child_pid and command_line_mentions(job.child_pid, str(work_dir(job.id))):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(job.child_pid, signal.SIGKILL)
        shutil.rmtree(work_dir(job.id), ignore_errors=True)


def sweep_work_dirs(store: JobStore, jobs_dir: Path) -> None:
    """Remove work dirs of ended jobs, and stale ones of requests that died before queuing theirs."""
    for path in jobs_dir.iterdir() if jobs_dir.is_dir() else ():
        if not path.is_dir():
            continue
        job = store.get(path.name)
        stale = job is None and time.time() - path.stat().st_mtime > STRAY_AFTER_S
        if stale or (job is not None and job.finished):
            shutil.rmtree(path, ignore_errors=True)


def renew(store: JobStore, job: Job, owner: Owner) -> Lease:
    """Renew ``owner``'s lease on ``job``; a row the store lost (recreated) is put back first."""
    lease = store.heartbeat(job.id, owner)
    if lease == "missing" and store.restore(job):  # the store was recreated: the job is still ours
        log.warning("job %s: the job store lost this running job; it was put back", job.id)
        lease = store.heartbeat(job.id, owner)
    return lease


def record_end(store: JobStore, job: Job, outcome: Outcome) -> None:
    """Write how ``job`` ended; a row the store lost meanwhile goes back, ended."""
    status, result, error = outcome.status, outcome.result, outcome.error
    written = store.finish(job.id, status, result=result, error=error)
    if not written and store.get(job.id) is None:
        ended = replace(job, status=status, result=result, error=error, finished_at=now_iso())
        store.restore(ended)  # the store was recreated meanwhile: the job goes back, ended
