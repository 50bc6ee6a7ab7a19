"""Supervising one job's training process: start the CLI niced, relay its progress into the store (the
runner keeps the job's lease), honour cancel requests and the timeout, and kill its whole process group
when it must stop.

The process itself (command line, environment, stderr tail) is ``app/jobs/process.py``; the queue that
decides which job runs is ``app/jobs/runner.py``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from app.config import Settings
from app.jobs.phases import EARLY, apply_event, enter
from app.jobs.process import TrainingProcess, describe_exit, disk_full
from app.storage.errors import StoreUnavailable
from app.storage.job_store import CANCELLED, Job, JobStore, Outcome
from app.storage.pg_access import optuna_access
from closecast.summary import JOB_ID_ENV

log = logging.getLogger(__name__)

PROGRESS_FILE = (
    "progress.jsonl"  # the CLI appends one JSON line per epoch (trial, phase) here, in the work dir
)
POLL_S = 0.25  # while a job runs: progress, cancel requests, timeout
PROGRESS_KEYS = ("epoch", "epochs", "train_loss", "val_loss")
TUNE_KEYS = ("phase", "trials_done", "trials", "trials_pruned", "best_value")  # a search's lines add these


def time_limit(spec: dict[str, Any], settings: Settings) -> tuple[float, str]:
    """How long the job's process may run, and the settings that say so: CLOSECAST_TRAIN_TIMEOUT_S for a
    plain job; a search's ``timeout_s`` plus that (the final refit), capped by CLOSECAST_TUNE_TIMEOUT_S."""
    tune = spec.get("tune")
    if tune is None or spec.get("stage") == "refit":  # a distributed job's refit, once its shards are done
        return settings.train_timeout_s, "CLOSECAST_TRAIN_TIMEOUT_S"
    if tune.get("timeout_s") is None:
        return settings.tune_timeout_s, "CLOSECAST_TUNE_TIMEOUT_S"
    asked = tune["timeout_s"] + settings.train_timeout_s
    if asked >= settings.tune_timeout_s:
        return settings.tune_timeout_s, "CLOSECAST_TUNE_TIMEOUT_S"
    return asked, "tune.timeout_s + CLOSECAST_TRAIN_TIMEOUT_S for the refit"


def command_flags(
    spec: dict[str, Any], work: Path, out: Path, settings: Settings
) -> tuple[str, dict[str, Any]]:
    """The CLI command (``train``, or ``tune`` for a search) and its flags for the job's ``spec``."""
    flags = {
        "csv": [work / name for name in spec.get("csvs") or [spec["csv"]]],
        "out": out,
        "column": spec["column"],
        "date-column": spec.get("date_column"),
        "id-column": spec.get("id_column"),
        "progress-file": work / PROGRESS_FILE,
        "threads": settings.train_threads,
        "device": settings.train_device,
        **{name.replace("_", "-"): _flag(value) for name, value in spec["params"].items()},
    }
    tune = spec.get("tune")
    if tune is None:
        return "train", flags
    search = {  # the study lives in a SQLite file beside --out: in the work dir, gone with the job
        "trials": tune["trials"],
        "timeout": tune.get("timeout_s"),
        "trial-timeout": tune.get("trial_timeout_s") or tune.get("timeout_s"),
        "folds": tune["folds"],
    }
    if spec.get("study"):  # one stage of a distributed job (app/jobs/shards.py); the URL goes in the env
        search.update(study=spec["study"], budget=tune["trials"], shard=spec["shard"], stage=spec["stage"])
        # a killed shard's trial is given up after the same lease as its job row (whole seconds for Optuna)
        beats = {"trial-heartbeat": settings.job_heartbeat_s, "trial-grace": settings.job_lease_s}
        search.update({flag: math.ceil(seconds) for flag, seconds in beats.items()})
    return "tune", {**flags, **search}


def study_environment(spec: dict[str, Any], settings: Settings, work: Path) -> dict[str, str]:
    """A distributed job's study database for the CLI: a URL of Optuna's own role without a password
    (``CLOSECAST_TUNE_STORAGE``), that role's password in a 0600 ``PGPASSFILE`` in the work dir, Optuna's
    schema as the search path (``app/storage/pg_access.py``). Never the service's URL or password: not on
    the command line, where ``ps`` shows it to every user, nor in the environment (``/proc/PID/environ``)."""
    access = optuna_access(settings)
    if not spec.get("study") or access is None or settings.database_url is None:
        return {}
    return access.child_environment(settings.database_url.get_secret_value(), work)


class Supervisor:
    """Runs the training CLI of one job at a time for a worker and stops it on cancel, timeout or shutdown."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.child: TrainingProcess | None = None
        self.progress: dict[str, Any] = {}  # the running job's progress as last written (phases included)
        self._read = 0  # bytes of the progress file already relayed

    def mark(self, job_id: str, phase: str) -> None:
        """Blocking: the running job enters ``phase`` (``app/jobs/phases.py``); best effort, like progress."""
        self.progress = enter(self.progress, phase)
        with suppress(StoreUnavailable):
            self.store.set_progress(job_id, self.progress)

    def start(self, python: str, job: Job, work: Path, out: Path) -> None:
        """Blocking: start the CLI on the job's data, the params as flags and the service's thread count and
        device (``CLOSECAST_TRAIN_DEVICE``), niced, writing its bundle to ``out``; raises ``OSError`` when it
        cannot be started."""
        command, flags = command_flags(job.spec, work, out, self.settings)
        limit, _ = time_limit(job.spec, self.settings)
        env = {
            **study_environment(job.spec, self.settings, work),
            JOB_ID_ENV: job.id,
        }  # the manifest records it
        threads = self.settings.train_threads
        training = TrainingProcess.start(python, flags, work, threads, limit, command, env)
        proc = training.popen
        with suppress(OSError):  # best effort; set before the child starts its threads, which inherit it
            niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.settings.train_nice)
            os.setpriority(os.PRIO_PROCESS, proc.pid, niceness)
        self.child = training
        try:
            self.store.set_child(job.id, proc.pid)
            stored = self.store.get(
                job.id
            )  # a later stage's process (shards.py) goes on from the stored phases
            self.progress, self._read = (stored.progress if stored else None) or job.progress or {}, 0
            if self.progress.get("phase") in EARLY:
                self.mark(job.id, "loading")
        except BaseException:
            self.stop()
            raise
        log.info("job %s: training process %d started", job.id, proc.pid)

    async def wait(self, job: Job, work: Path) -> Outcome | None:
        """Wait for the CLI, relaying its progress; None when it succeeded, else why it did not."""
        assert self.child is not None
        training, proc = self.child, self.child.popen
        timeout, setting = time_limit(job.spec, self.settings)
        deadline = anyio.current_time() + timeout
        while proc.poll() is None:
            await anyio.sleep(POLL_S)
            cancel = await anyio.to_thread.run_sync(self._tick, job, work)
            if cancel:
                await self._kill()
                return Outcome("cancelled", error=CANCELLED)
            if anyio.current_time() > deadline:
                await self._kill()
                return Outcome(
                    "failed",
                    error=f"training ran longer than {timeout:g} s ({setting}); killed",
                )
        await anyio.to_thread.run_sync(self._tick, job, work)
        self.child = None
        if proc.returncode == 0:
            return None
        last = training.last_stderr_line()
        full = disk_full(training.stderr_lines(), (work, self.settings.model_dir))
        return Outcome("failed", error=describe_exit(proc.returncode, last, full))

    def _tick(self, job: Job, work: Path) -> bool:
        """Copy the progress lines written since the last tick into the store (every one counts: a phase
        line may be followed at once by an epoch); report whether to cancel. A store that is locked or gone
        for now skips the tick: training goes on (the runner's lease keeper notes the problem)."""
        lines, read = new_lines(work / PROGRESS_FILE, self._read)
        try:
            if lines:
                progress = self.progress
                for line in lines:
                    with suppress(ValueError, TypeError, AttributeError):  # not a JSON object: skipped
                        progress = apply_event(progress, json.loads(line), (*PROGRESS_KEYS, *TUNE_KEYS))
                self.store.set_progress(job.id, progress)
                self.progress, self._read = progress, read
            return self.store.cancel_requested(job.id)
        except StoreUnavailable:
            return False

    async def _kill(self) -> None:
        if self.child is not None:
            await anyio.to_thread.run_sync(self.stop)

    def stop(self) -> None:
        """Blocking: kill the training process group (if still running) and reap it."""
        training, self.child = self.child, None
        if training is not None:
            with suppress(ProcessLookupError):
                os.killpg(training.popen.pid, signal.SIGKILL)
            training.popen.wait(timeout=10)


def _flag(value: Any) -> Any:
    """A list param (``features``) as the CLI's comma-separated value."""
    return ",".join(map(str, value)) if isinstance(value, list) else value


def new_lines(path: Path, start: int) -> tuple[list[str], int]:
    """The complete lines of ``path`` after byte ``start`` (a line still being written waits for the next
    look), and the offset after them."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return [], start
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", "replace")
    return [line.strip() for line in text.splitlines() if line.strip()], start + end
