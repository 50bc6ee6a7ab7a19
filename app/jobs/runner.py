"""Retrain jobs of one worker process: the queue and the worker loop that runs them one at a time.

    <model_dir>/jobs.sqlite          the embedded job store (app/storage/), created by the first job
    <model_dir>/.jobs/<job_id>/      a job's work dir: its CSVs, progress.jsonl, a tune job's Optuna study
                                     (SQLite) and, while judged, the new bundle <version>/ (hidden till then)

A job runs ``python -m training train`` (``tune`` for a search) in its own process group, niced, with a
timeout (``supervisor.py``, ``process.py``); the service never imports torch. A failed job's error is its
stderr's last line. The new bundle is verified, judged, renamed into ``<model_dir>/<model>/<version>`` and
made current if the gate says so (``promotion.py``); anything failing before the rename leaves the registry
and served models as they were.

Every worker runs a ``JobRunner`` (a supervised loop); they share the queue through the job store (SQLite,
or PostgreSQL in scale-out: ``app/storage/backends.py``) and claim atomically, one job per model at a time. A
running job's lease is renewed every ``CLOSECAST_JOB_HEARTBEAT_S``; a job whose worker is gone is failed by
whichever runner looks next and its training process killed: "interrupted by restart" when its process died
(same host and boot), "worker lost" when its runner stopped inside a live process or its lease was not
renewed for ``CLOSECAST_JOB_LEASE_S`` (any host). A runner that finds its lease taken over kills its
training and records nothing; one that finds its row gone puts it back. ``CLOSECAST_RUN_JOBS=false``: the
runner only enqueues. Job store problems never end the loop: it notes them (``health``, in ``/readyz``'s
``degraded``) and looks again at the next tick."""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import sys
import time
import uuid
from contextlib import suppress
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
from anyio import CancelScope
from anyio.abc import TaskStatus

from app.config import Settings
from app.inference.models import LoadedModels
from app.jobs.errors import JobFinished, JobNotFound, JobsUnavailable, storage_failed
from app.jobs.leases import LIVE_TOKENS, record_end, recover_gone, renew, sweep_work_dirs
from app.jobs.phases import enter
from app.jobs.process import HOST_AND_BOOT, process_start
from app.jobs.promotion import GateRule, RegistryRules, judge_and_register
from app.jobs.shards import JobContext, train_job
from app.jobs.spec import Prepare, job_series
from app.jobs.supervisor import Supervisor
from app.storage.errors import StoreFull, StoreUnavailable
from app.storage.job_store import JOBS_DIR, Job, JobStore, Outcome, Owner, claim_any
from closecast import registry
from closecast.series import Series

log = logging.getLogger(__name__)

IDLE_S = 1.0  # between looks at the queue when it was empty (jobs queued by other workers)

SHUTDOWN = "interrupted: the service shut down while this job was running; submit it again"


class JobRunner:
    """Accepts jobs (any thread) and runs them one at a time (``serve``, in the app's lifespan)."""

    # What `python -m training train` needs; looked up with find_spec, which does not import them.
    training_modules: tuple[str, ...] = ("torch", "onnx", "onnxscript", "matplotlib", "tqdm")

    def __init__(
        self,
        settings: Settings,
        models: LoadedModels,
        store: JobStore,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.models = models  # a job promotes through its model's holder (the loaded one, when loaded)
        self.model_dir = settings.model_dir
        self.jobs_dir = settings.model_dir / JOBS_DIR
        self.store = store  # the backend chosen once, by app/storage/backends.py
        self.python = python  # interpreter for `-m training`; tests put a wrapper here
        self.token = secrets.token_hex(8)
        self._owner: Owner | None = None  # built in `serve`, in the worker process that runs the jobs
        self._store_seen = False  # this process has opened the store (and recovered what it held)
        self.unavailable: str | None = "the job runner has not started yet; retry in a moment"
        self.problem: str | None = None  # what is wrong with the job store now, as the loop last saw it
        self._wake: anyio.Event | None = None
        self.alive_at = (
            time.monotonic()
        )  # the loop's last tick (idle look, lease renewal): the worker's /healthz
        self.metrics = models.metrics  # jobs claimed, running, ended, durations, lease renewals
        self.supervisor = Supervisor(settings, self.store)

    def work_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def context(self) -> JobContext:
        """What a job's training may use of this runner (read when the job starts: tests swap ``python``)."""
        return JobContext(
            self.settings, self.store, self.supervisor, self.python, self.work_dir, self.recover
        )

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
        self.store.open()  # idempotent and cheap once open; the first job creates the store
        try:
            work.mkdir(parents=True)
        except OSError as exc:
            raise storage_failed(self.model_dir, exc) from exc
        try:
            sub = prepare(work)
            progress = enter(sub.initial_progress(), "queued")
            job = self.store.enqueue(
                job_id, sub.name, sub.promote, sub.spec(), progress, self.settings.job_queue_size, sub.model
            )
        except OSError as exc:  # e.g. a full disk while writing the data or the row (StoreFull)
            shutil.rmtree(work, ignore_errors=True)
            raise storage_failed(self.model_dir, exc) from exc
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("job %s queued: %s on %s, %d closes, %s", job.id, sub.model, sub.name, sub.rows, sub.promote)
        return job

    def queue_has_room(self) -> bool:
        """A cheap look before reading an upload (``submit`` checks again, atomically)."""
        return not self.store.exists() or self.store.count("queued") < self.settings.job_queue_size

    def wake(self) -> None:
        """Look at the queue now rather than at the next tick (call on the event loop)."""
        if self._wake is not None:
            self._wake.set()

    def get(self, job_id: str) -> Job:
        self.check_available()
        job = self.store.get(job_id) if self.store.exists() else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    def recent(self, limit: int) -> list[Job]:
        self.check_available()
        return self.store.recent(limit) if self.store.exists() else []

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

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: recover what gone workers left, then run queued jobs one at a time.

        Supervised: reports started once it has looked at the store and failed the jobs of gone workers; an
        unexpected error ends the run and a new one starts (a new token: the ended run's job counts as lost).
        """
        if not self.settings.run_jobs:  # an API replica: it enqueues, workers (`closecast worker`) train
            self.unavailable = None
            task_status.started()
            await anyio.sleep_forever()
        missing = [name for name in self.training_modules if importlib.util.find_spec(name) is None]
        if missing:  # the serve-only image, or an install without the `train` extra
            self.unavailable = (
                f"this installation cannot train: {', '.join(missing)} not installed; use the cpu or cuda "
                "image, or `pip install torch==2.13.0 && pip install -e '.[train]'`"
            )
            log.warning("%s", self.unavailable)
            task_status.started()
            return
        self.token = secrets.token_hex(8)
        self._owner = Owner(os.getpid(), HOST_AND_BOOT, process_start(os.getpid()), self.token)
        self._wake = anyio.Event()
        LIVE_TOKENS.add(self.token)
        try:
            await self._look(claim=False)
            self.unavailable = None
            task_status.started()
            while True:
                self.alive_at = time.monotonic()
                job = await self._look(claim=True)
                if job is None:
                    with anyio.move_on_after(IDLE_S):
                        await self._wake.wait()
                    self._wake = anyio.Event()
                else:
                    self.metrics.jobs_claimed.inc()
                    await self._run(job)
        finally:
            LIVE_TOKENS.discard(self.token)
            self.supervisor.stop()  # a run that failed mid-job leaves no training process behind

    def health(self) -> str | None:
        """What is wrong with the job store now (for ``/readyz``'s ``degraded``), or None."""
        return self.problem

    def _note(self, problem: str | None) -> None:
        """Remember the store's state; log when it changes (not once per tick)."""
        if problem != self.problem:
            if problem is None:
                log.info("the job store is usable again")
            else:
                log.warning("job runner: %s", problem)
        self.problem = problem

    async def _look(self, claim: bool) -> Job | None:
        """Recover gone workers' jobs and, with ``claim``, start the next queued job; None on trouble."""
        try:
            job = await anyio.to_thread.run_sync(self._look_blocking, claim)
        except StoreUnavailable as exc:
            self._note(exc.message)
            return None
        except StoreFull as exc:  # a full disk: nothing to claim until there is room again
            self._note(f"the job store {self.store.name} cannot be written ({exc.strerror})")
            return None
        self._note(None)
        return job

    def _look_blocking(self, claim: bool) -> Job | None:
        if not self._store_seen:  # the first job creates the store; until then there is nothing to do
            if not self.store.exists():
                return None
            self.store.open()
            self.recover()
            sweep_work_dirs(self.store, self.jobs_dir)
            self._store_seen = True
        self.recover()
        assert self._owner is not None
        return claim_any(self.store, self._owner, self.models.default_name) if claim else None

    def recover(self) -> None:
        """Fail the running jobs whose worker is gone, kill their training processes (a tune job's parent
        calls this too: ``shards.py``)."""
        recover_gone(self.store, self.models.default_name, self.settings.job_lease_s, self.work_dir)

    async def _run(self, job: Job) -> None:
        """Train, judge and record ``job`` (counted and timed by how it ended)."""
        began, ended = time.monotonic(), "failed"  # a shutdown mid-job fails it
        self.metrics.jobs_running.inc()
        try:
            ended = await self._run_and_record(job)
        finally:
            self.metrics.jobs_running.dec()
            self.metrics.job_ended(ended, time.monotonic() - began)

    async def _run_and_record(self, job: Job) -> str:
        """Train, judge and record ``job`` while a companion task keeps its lease; how it ended."""
        log.info("job %s running", job.id)
        work = self.work_dir(job.id)
        lost: list[str] = []
        outcome: Outcome | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep_lease, job, group.cancel_scope, lost)
                outcome = await self._outcome(job, work)
                group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():  # shutdown: never leave a job running behind us
            self.supervisor.stop()
            with suppress(StoreUnavailable, StoreFull):
                self.store.finish(job.id, "failed", error=SHUTDOWN)
            shutil.rmtree(work, ignore_errors=True)
            raise
        if outcome is None:  # the lease was taken over: the job is no longer ours to record
            self.supervisor.stop()
            shutil.rmtree(work, ignore_errors=True)
            log.warning("job %s: %s; its training was stopped", job.id, lost[0] if lost else "lease lost")
            return "lost"
        await self._record(job, work, outcome)
        return outcome.status

    async def _outcome(self, job: Job, work: Path) -> Outcome:
        try:
            return await self._train_and_promote(job, work)
        except StoreUnavailable as exc:
            self.supervisor.stop()
            return Outcome("failed", error=f"the job store failed while the job ran: {exc.message}")
        except Exception as exc:  # a bug here must not stop the queue
            log.exception("job %s failed inside the runner", job.id)
            self.supervisor.stop()
            return Outcome("failed", error=f"internal error while running the job: {exc!r}")

    async def _keep_lease(self, job: Job, scope: CancelScope, lost: list[str]) -> None:
        """Renew the lease every heartbeat; put the row back if the store lost it; stop the job if lost."""
        assert self._owner is not None
        while True:
            await anyio.sleep(self.settings.job_heartbeat_s)
            self.alive_at = time.monotonic()
            try:
                lease = await anyio.to_thread.run_sync(renew, self.store, job, self._owner)
            except StoreUnavailable as exc:  # locked or gone for now: training goes on, retry next beat
                self._note(exc.message)
                self.metrics.lease_renewals.labels("unavailable").inc()
                continue
            self._note(None)
            self.metrics.lease_renewals.labels(lease).inc()
            if lease != "held":
                lost.append(f"lease {lease}: another worker took the job over, or the job store lost it")
                scope.cancel()
                return

    async def _record(self, job: Job, work: Path, outcome: Outcome) -> None:
        """Write how the job ended, retrying a locked store for up to a lease (then the run ends: lost)."""
        deadline = anyio.current_time() + self.settings.job_lease_s
        try:
            while True:
                try:
                    await anyio.to_thread.run_sync(record_end, self.store, job, outcome)
                    break
                except StoreUnavailable as exc:
                    self._note(exc.message)
                    if anyio.current_time() > deadline:
                        raise
                    await anyio.sleep(self.settings.job_heartbeat_s)
                    self.alive_at = time.monotonic()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("job %s %s%s", job.id, outcome.status, f": {outcome.error}" if outcome.error else "")

    async def _train_and_promote(self, job: Job, work: Path) -> Outcome:
        out = work / registry.new_version_id(job.id.encode())
        ended = await train_job(self.context(), job, work, out)  # one CLI process, or a tune job's shards
        if ended is not None:
            return ended
        gate = GateRule(self.settings.gate, self.settings.gate_alpha)
        rules = RegistryRules(
            self.models.default, self.settings.max_models, self.settings.keep_versions, gate
        )
        judge = partial(
            judge_and_register,
            self.models.holder_of(job.model),
            out,
            job.promote,
            partial(self._job_closes, job, work),
            partial(self.store.cancel_requested, job.id),
            rules,
            partial(self.supervisor.mark, job.id),
        )
        return await anyio.to_thread.run_sync(judge)

    @staticmethod
    def _job_closes(job: Job, work: Path) -> Series | dict[str, Series]:
        """The series the job trained on (each by name, for several), read back from its work dir."""
        return job_series(work, job.spec)
