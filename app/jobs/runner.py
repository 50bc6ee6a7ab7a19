"""Retrain jobs of one worker process: the queue and the worker loop that runs them one at a time.

    <model_dir>/jobs.sqlite          the job store (app/jobs/store.py), shared by all workers; created by
                                     the first job, so a service that never trains never writes here
    <model_dir>/.jobs/<job_id>/      a job's work dir: its CSV, progress.jsonl and, while it is judged, the
                                     new bundle <version>/ (hidden from the registry until then)

A job runs ``python -m training train`` exactly as a user would, in its own process group at a lower
priority with a timeout (``supervisor.py``, ``process.py``); the service process never imports torch. Its
stderr comes back through a pipe (a full disk must not hide the error that says so); a failed job's error is
its last line. The new bundle is loaded and verified in full, judged by the promotion gate, renamed into
``<model_dir>/<version>`` (registered), and made current if the gate says so (``promotion.py``). Anything
that goes wrong before that rename leaves the registry and the served model as they were, and the job
``failed`` with the reason.

Every worker runs a ``JobRunner``; they share the queue through SQLite and claim jobs atomically, so one job
runs at a time across workers. A job whose worker died is marked failed ("interrupted by restart") by
whichever worker looks next, and its orphaned training process is killed. On the same host and boot a worker
is dead when its pid is gone or now belongs to a process that started at another time (pids are recycled,
and a restarted container hands out the same ones); a worker elsewhere (another container on a shared
volume) is dead once its heartbeat is older than ``OWNER_SILENT_S``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import time
import uuid
from contextlib import suppress
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from app.config import Settings
from app.inference.models import LoadedModels
from app.jobs.errors import JobFinished, JobNotFound, JobsUnavailable, storage_failed
from app.jobs.process import HOST_AND_BOOT, command_line_mentions, process_alive, process_start
from app.jobs.promotion import RegistryRules, judge_and_register
from app.jobs.store import Job, JobStore, Outcome, Owner
from app.jobs.supervisor import Supervisor
from app.jobs.validation import Prepare, job_closes
from closecast import registry
from closecast.forecaster import F64

log = logging.getLogger(__name__)

DB_FILE = "jobs.sqlite"
JOBS_DIR = ".jobs"
IDLE_S = 1.0  # between looks at the queue when it was empty (jobs queued by other workers)
STRAY_AFTER_S = 3600  # a work dir without a job row is removed after this (a request that crashed)
OWNER_SILENT_S = 120.0  # a running job's owner is taken for dead after this long without a heartbeat
# (other hosts only; the supervisor beats every HEARTBEAT_S)

SHUTDOWN = "interrupted: the service shut down while this job was running; submit it again"

_LIVE_TOKENS: set[str] = set()  # runners serving in this process (tests run several apps in one process)


class JobRunner:
    """Accepts jobs (any thread) and runs them one at a time (``serve``, in the app's lifespan)."""

    # What `python -m training train` needs; looked up with find_spec, which does not import them.
    training_modules: tuple[str, ...] = ("torch", "onnx", "onnxscript", "matplotlib", "tqdm")

    def __init__(self, settings: Settings, models: LoadedModels, python: str = sys.executable) -> None:
        self.settings = settings
        self.models = models
        self.holder = models.default
        self.model_dir = settings.model_dir
        self.jobs_dir = settings.model_dir / JOBS_DIR
        self.store = JobStore(settings.model_dir / DB_FILE)
        self.python = python  # interpreter for `-m training`; tests put a wrapper here
        self.token = secrets.token_hex(8)
        self._owner: Owner | None = None  # built in `serve`, in the worker process that runs the jobs
        self._store_seen = False  # this process has opened the store (and recovered what it held)
        self.unavailable: str | None = "the job runner has not started yet; retry in a moment"
        self._wake: anyio.Event | None = None
        self.supervisor = Supervisor(settings, self.store)

    def work_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    # --- the API side ------------------------------------------------------------------------------------

    def check_available(self) -> None:
        if self.unavailable is not None:
            raise JobsUnavailable(self.unavailable)

    def submit(self, prepare: Prepare) -> Job:
        """Blocking: give the job a work dir, let ``prepare`` write and validate its data there, queue it.

        Raises ``QueueFull`` (nothing is written), ``StorageFailed`` (503, 507 when full) when the model dir
        cannot take the job, or whatever ``prepare`` raises (the work dir is removed).
        """
        self.check_available()
        job_id = uuid.uuid4().hex
        work = self.work_dir(job_id)
        try:
            self.store.open()  # idempotent; the first job creates the store
            work.mkdir(parents=True)
        except (OSError, sqlite3.Error) as exc:
            raise storage_failed(self.model_dir, exc) from exc
        try:
            sub = prepare(work)
            progress = {"epoch": 0, "epochs": sub.epochs, "train_loss": None, "val_loss": None}
            job = self.store.enqueue(
                job_id, sub.name, sub.promote, sub.spec(), progress, self.settings.job_queue_size
            )
        except (OSError, sqlite3.Error) as exc:  # e.g. a full disk while writing the data or the row
            shutil.rmtree(work, ignore_errors=True)
            raise storage_failed(self.model_dir, exc) from exc
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info(
            "job %s queued: model %s, %s, %d closes, promote=%s",
            job.id,
            sub.model,
            sub.name,
            sub.rows,
            sub.promote,
        )
        return job

    def queue_has_room(self) -> bool:
        """A cheap look before reading an upload (``submit`` checks again, atomically)."""
        return not self.store.path.exists() or self.store.count("queued") < self.settings.job_queue_size

    def wake(self) -> None:
        """Look at the queue now rather than at the next tick (call on the event loop)."""
        if self._wake is not None:
            self._wake.set()

    def get(self, job_id: str) -> Job:
        self.check_available()
        job = self.store.get(job_id) if self.store.path.exists() else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    def recent(self, limit: int) -> list[Job]:
        self.check_available()
        return self.store.recent(limit) if self.store.path.exists() else []

    def cancel(self, job_id: str) -> Job:
        """Blocking: cancel a queued job now, or ask the worker running it to kill it (``wait_finished``)."""
        job = self.get(job_id)
        if job.finished:
            raise JobFinished(job.id, job.status)
        job = self.store.request_cancel(job_id) or job
        if job.status == "cancelled":
            shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
            log.info("job %s cancelled while queued", job_id)
        return job

    async def wait_finished(self, job_id: str, timeout_s: float) -> Job:
        """The job once it has ended, or as it stands after ``timeout_s``."""
        with anyio.move_on_after(timeout_s):
            while not (job := await anyio.to_thread.run_sync(self.get, job_id)).finished:
                await anyio.sleep(0.1)
            return job
        return await anyio.to_thread.run_sync(self.get, job_id)

    # --- the worker side ---------------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: recover what a dead worker left, then run queued jobs one at a time.

        Start it with ``await task_group.start(runner.serve)``: that returns once it has looked at the store
        (which the first job creates) and failed the jobs of dead workers. With a store that cannot be used it
        logs why and returns; serving goes on and ``/train`` answers 503 with the reason.
        """
        missing = [name for name in self.training_modules if importlib.util.find_spec(name) is None]
        if missing:  # the serve-only image, or an install without the `train` extra
            self.unavailable = (
                f"this installation cannot train: {', '.join(missing)} not installed; use the cpu or cuda "
                "image, or `pip install torch==2.13.0 && pip install -e '.[train]'`"
            )
            log.warning("%s", self.unavailable)
            task_status.started()
            return
        try:
            await anyio.to_thread.run_sync(self._look_at_store)
        except (OSError, sqlite3.Error) as exc:
            self.unavailable = (
                f"retraining is unavailable: the job store {self.store.path} cannot be used ({exc}); "
                f"make CLOSECAST_MODEL_DIR writable and restart"
            )
            log.error("%s", self.unavailable)
            task_status.started()
            return
        self._wake = anyio.Event()
        self._owner = Owner(os.getpid(), HOST_AND_BOOT, process_start(os.getpid()), self.token)
        _LIVE_TOKENS.add(self.token)
        self.unavailable = None
        task_status.started()
        try:
            while True:
                job = await self._next_job()
                if job is None:
                    with anyio.move_on_after(IDLE_S):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                else:
                    await self._run(job)
        finally:
            _LIVE_TOKENS.discard(self.token)
            self.unavailable = "the job runner has stopped"

    def _look_at_store(self) -> bool:
        """Whether the store exists; the first time it does, open it and recover what dead workers left."""
        if not self._store_seen and self.store.path.exists():
            self.store.open()
            self._reap()
            self._sweep_work_dirs()
            self._store_seen = True
        return self._store_seen

    async def _next_job(self) -> Job | None:
        def look() -> Job | None:
            if not self._look_at_store():
                return None
            self._reap()
            assert self._owner is not None
            return self.store.claim(self._owner)

        try:
            return await anyio.to_thread.run_sync(look)
        except sqlite3.Error:  # e.g. locked longer than the timeout: look again at the next tick
            log.exception("could not look at the job queue in %s", self.store.path)
            return None

    @staticmethod
    def _owner_alive(job: Job) -> bool:
        owner = job.owner
        if owner is None:
            return False
        if owner.host != HOST_AND_BOOT:  # another machine, container or boot: only its heartbeat can tell
            return time.time() - (job.heartbeat_at or 0.0) < OWNER_SILENT_S
        if owner.pid == os.getpid():  # ours, or a dead worker's whose pid this process reuses
            return owner.token in _LIVE_TOKENS
        return process_alive(owner.pid, owner.started)

    def _reap(self) -> None:
        """Fail the running jobs whose worker died, and kill the training processes they left behind."""
        for job in self.store.with_status("running"):
            if self._owner_alive(job):
                continue
            pid = job.owner.pid if job.owner else None
            message = (
                f"interrupted by restart: the worker process {pid} that ran this job is gone; submit it again"
            )
            if self.store.finish(job.id, "failed", error=message):
                log.warning("job %s: %s", job.id, message)
            here = job.owner is not None and job.owner.host == HOST_AND_BOOT
            if here and job.child_pid and command_line_mentions(job.child_pid, str(self.work_dir(job.id))):
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.child_pid, signal.SIGKILL)
            shutil.rmtree(self.work_dir(job.id), ignore_errors=True)

    def _sweep_work_dirs(self) -> None:
        """Remove work dirs of ended jobs, and stale ones of requests that died before queuing theirs."""
        for path in self.jobs_dir.iterdir() if self.jobs_dir.is_dir() else ():
            if not path.is_dir():
                continue
            job = self.store.get(path.name)
            stale = job is None and time.time() - path.stat().st_mtime > STRAY_AFTER_S
            if stale or (job is not None and job.finished):
                shutil.rmtree(path, ignore_errors=True)

    async def _run(self, job: Job) -> None:
        log.info("job %s running", job.id)
        work = self.work_dir(job.id)
        try:
            outcome = await self._train_and_promote(job, work)
        except anyio.get_cancelled_exc_class():  # shutdown: never leave a job running behind us
            self.supervisor.stop()
            self.store.finish(job.id, "failed", error=SHUTDOWN)
            shutil.rmtree(work, ignore_errors=True)
            raise
        except Exception as exc:  # a bug here must not stop the queue
            log.exception("job %s failed inside the runner", job.id)
            self.supervisor.stop()
            outcome = Outcome("failed", error=f"internal error while running the job: {exc!r}")
        await anyio.to_thread.run_sync(self._record, job, work, outcome)

    def _record(self, job: Job, work: Path, outcome: Outcome) -> None:
        self.store.finish(job.id, outcome.status, result=outcome.result, error=outcome.error)
        shutil.rmtree(work, ignore_errors=True)
        log.info("job %s %s%s", job.id, outcome.status, f": {outcome.error}" if outcome.error else "")

    async def _train_and_promote(self, job: Job, work: Path) -> Outcome:
        out = work / registry.new_version_id(job.id.encode())
        try:
            await anyio.to_thread.run_sync(self.supervisor.start, self.python, job, work, out)
        except OSError as exc:
            return Outcome("failed", error=f"could not start the training process: {exc}")
        failure = await self.supervisor.wait(job, work)
        if failure is not None:
            return failure
        rules = RegistryRules(self.models.default, self.settings.max_models, self.settings.keep_versions)
        judge = partial(
            judge_and_register,
            self.models.holder_of(self.model_of(job)),
            out,
            job.promote,
            partial(self._job_closes, job, work),
            partial(self.store.cancel_requested, job.id),
            rules,
        )
        return await anyio.to_thread.run_sync(judge)

    def model_of(self, job: Job) -> str:
        """The model a job trains (jobs from before named models train the default one)."""
        return str(job.spec.get("model") or self.models.default_name)

    def _job_closes(self, job: Job, work: Path) -> F64:
        """The closes the job trained on, read back from its work dir (saying the owner is alive first)."""
        self.store.beat(job.id)
        spec = job.spec
        return job_closes(work / spec["csv"], spec["column"], spec.get("date_column"))
