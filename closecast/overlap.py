"""Where a model's own training closes sit inside a series it is backtested on (numpy + hashlib only).

A backtest fold of a series the model never saw is out of sample whatever its dates: sharing a calendar
with the training data is not leakage, seeing the same closes is. The manifest records, per training series,
the SHA-256 of its closes (``closes_sha256``), how many there were (``rows_used``), where they began
(``date_start``) and where its test part began (``split.test_start``). A series sent for a backtest contains
a training series when the closes at the start (or, with dates, from that series' ``date_start`` on) hash to
the recorded value over the recorded number of rows; the model then saw its closes before ``test_start``.

A slice that does not hold the whole recorded series cannot be recognised from a hash: it counts as unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from closecast.representation import FloatArray, closes_sha256

Span = tuple[int, int]  # [start, stop) indexes of closes the model trained (or was validated) on


def recorded_series(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's record of each training series: ``data.series`` (format 2), or ``data`` itself."""
    data = manifest.get("data", {})
    if isinstance(data.get("series"), list):
        return list(data["series"])
    return [{**data, "name": Path(str(data.get("source", ""))).stem}]


def _offsets(entry: dict[str, Any], dates: Sequence[str] | None) -> list[int]:
    offsets = [0]
    start = entry.get("date_start")
    if dates and start:
        found = next((i for i, d in enumerate(dates) if str(d)[: len(start)] == start), None)
        if found is not None and found != 0:
            offsets.append(found)
    return offsets


def training_spans(
    manifest: dict[str, Any], closes: FloatArray, dates: Sequence[str] | None = None
) -> list[Span] | None:
    """The spans of ``closes`` that are a training series' closes before its test part; ``[]`` when the model
    never saw these closes, ``None`` when the manifest records no hash to tell."""
    c = np.asarray(closes, dtype=np.float64)
    entries = [e for e in recorded_series(manifest) if e.get("closes_sha256")]
    if not entries:
        return None
    spans = []
    for entry in entries:
        rows = int(entry.get("rows_used") or entry.get("rows") or 0)
        test_start = int(entry.get("split", {}).get("test_start", rows))
        for offset in _offsets(entry, dates):
            stop = offset + rows
            if rows > 0 and stop <= c.size and closes_sha256(c[offset:stop]) == entry["closes_sha256"]:
                spans.append((offset, offset + test_start))
                break
    return spans


def overlaps(start: int, stop: int, spans: list[Span] | None) -> bool | None:
    """Whether targets ``[start, stop)`` include a close of a training span (None: cannot be told)."""
    if spans is None:
        return None
    return any(start < hi and stop > lo for lo, hi in spans)
