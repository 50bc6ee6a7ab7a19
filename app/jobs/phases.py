"""Where a job stands, as a phase: ``progress.phase`` and the ``progress.phases`` entered so far, with times.

    queued -> loading -> training (epoch k/n) -> calibrating -> exporting -> judging -> promoting
    a search:  queued -> loading -> search -> refit -> judging -> promoting

The service enters ``queued`` (submit), ``loading`` (the training process started: imports, reading and
pooling the data), ``judging`` and ``promoting`` (``promotion.py``); the training process reports the others
as ``{"phase": ...}`` lines in its progress file (``training/pipeline.py``, a search's lines). Every phase is
entered once in a row: a search reports ``search`` with every trial, kept as one entry.
"""

from __future__ import annotations

from typing import Any

from app.storage.job_store import now_iso

PHASES = (
    "queued",
    "loading",
    "training",
    "search",
    "refit",
    "calibrating",
    "exporting",
    "judging",
    "promoting",
)
EARLY = (None, "queued", "loading")  # an epoch line seen in these (no phase line yet) means training


def enter(progress: dict[str, Any] | None, phase: str, at: str | None = None) -> dict[str, Any]:
    """``progress`` in ``phase`` from ``at`` (now), unless it is in that phase already; unknown phases
    (a newer training CLI's) are ignored rather than shown to clients whose schema lacks them."""
    progress = dict(progress or {})
    if phase not in PHASES or progress.get("phase") == phase:
        return progress
    phases = [*progress.get("phases", []), {"phase": phase, "at": at or now_iso()}]
    return {**progress, "phase": phase, "phases": phases}


def apply_event(
    progress: dict[str, Any] | None, event: dict[str, Any], keys: tuple[str, ...]
) -> dict[str, Any]:
    """``progress`` after one line of the training process: its ``keys`` copied, its phase entered (an
    epoch without a phase line, from an older CLI, is ``training``)."""
    given = {k: event[k] for k in keys if k in event and k not in ("phase", "phases")}
    merged = {**(progress or {}), **given}
    phase = event.get("phase")
    if phase is None and "epoch" in event and merged.get("phase") in EARLY:
        phase = "training"
    return enter(merged, phase) if isinstance(phase, str) else merged
