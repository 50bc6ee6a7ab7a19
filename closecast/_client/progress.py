"""A job's progress as a tqdm bar (when tqdm is installed and a bar is asked for), shared by both clients."""

from __future__ import annotations

from typing import Any

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
