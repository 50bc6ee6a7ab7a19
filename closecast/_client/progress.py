"""Waiting on a job, shared by both clients: a tqdm bar of its progress (when tqdm is installed and a bar is
asked for), the deadline, and what a finished job gives back. The clients only poll and sleep."""

from __future__ import annotations

import time
from typing import Any

from closecast._client.errors import JobFailed
from closecast._client.results import Job


class JobBar:
    """Epochs (or, while a search runs, trials) done out of their total, with the job's phase as the label."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # the bar is a nicety: waiting works without it
                return
            self._tqdm = tqdm

    def update(self, job: Job) -> None:
        if self._tqdm is None:
            return
        progress = job.progress or {}
        searching = progress.get("phase") == "search" and progress.get("trials")
        total = progress.get("trials") if searching else progress.get("epochs")
        done = progress.get("trials_done") if searching else progress.get("epoch")
        if self._bar is None or (total and self._bar.total != total):
            self.close()
            self._bar = self._tqdm(total=total, unit="trial" if searching else "epoch", leave=False)
        self._bar.set_description(f"{job.job_id[:8]} {progress.get('phase') or job.status}")
        if done is not None:
            self._bar.n = done
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JobWait:
    """One ``wait()``: each polled state goes through ``seen`` until it says the job has finished."""

    def __init__(self, timeout_s: float | None, progress: bool, raise_on_failure: bool) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.raise_on_failure = raise_on_failure
        self.bar = JobBar(progress)

    def seen(self, state: Job) -> bool:
        """Whether ``state`` is final; raises ``TimeoutError`` once the deadline has passed without it."""
        self.bar.update(state)
        if state.finished:
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError(f"job {state.job_id} still {state.status} after {self.timeout_s} s")
        return False

    def result(self, state: Job) -> Job:
        """The finished job, or ``JobFailed`` when it did not succeed (unless failures are wanted back)."""
        if self.raise_on_failure and state.status != "succeeded":
            raise JobFailed(state)
        return state

    def close(self) -> None:
        self.bar.close()
