"""Several series as one training set: one split by time across all of them, and the manifest's data section.

A model trained on many series is only honestly tested if nothing it trained on happened after what it is
tested on. So when every series has dates, one pair of cut timestamps is chosen on the pooled forecast targets
(at the ``train_frac`` and ``train_frac + val_frac`` quantiles), and each series is cut there: every training
target is earlier than every validation target, which is earlier than every test target, in every series. A
series that ends before the first cut only trains; one that starts after the second only tests. Without
dates (in any series) each series is split by position, as a single series always is.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from closecast.config import DataConfig
from closecast.series import (
    MIN_EVAL_TARGETS,
    MIN_TRAIN_TARGETS,
    DataError,
    Series,
    Split,
    check_length,
    make_split,
)
from closecast.timeaxis import common_frequency


def split_by_time(series: Sequence[Series], cfg: DataConfig) -> list[Split]:
    """One ``Split`` per series; refuses a series too short for a single forecast, or parts too small pooled.

    A single series splits exactly as ``check_length`` (by position), whatever its dates.
    """
    if not series:
        raise DataError("no series to train on; pass at least one CSV file")
    if len(series) == 1:
        return [check_length(series[0], cfg)]
    for s in series:
        _check_one_target(s, cfg.window)
    _check_same_kind(series)
    if split_mode(series) == "time":
        splits = _cut_by_time(series, cfg)
    else:
        splits = [_clamped(make_split(s.closes.size, cfg), cfg.window) for s in series]
    _check_pooled(splits, cfg)
    return splits


def split_mode(series: Sequence[Series]) -> str:
    """ "time" when there are several series and all have dates, else "position"."""
    if len(series) > 1 and all(s.dates is not None for s in series):
        return "time"
    return "position"


def target_counts(split: Split, window: int) -> dict[str, int]:
    """Forecast targets per part (the first ``window`` closes are history only, never targets)."""
    return {
        "train": max(0, split.train_end - window),
        "validation": split.val_end - max(split.train_end, window),
        "test": split.n - max(split.val_end, window),
    }


def _check_one_target(s: Series, window: int) -> None:
    n = s.closes.size
    if n <= window:
        raise DataError(
            f"{s.name}: only {n} usable closes; window {window} needs at least {window + 1} in every series "
            "(a window of history and one close to forecast); drop this series or lower --window"
        )


def _check_same_kind(series: Sequence[Series]) -> None:
    """Zoned and plain times cannot be ordered against each other across series either."""
    zoned = [s for s in series if s.datetimes and s.datetimes[0].tzinfo is not None]
    plain = [s for s in series if s.datetimes and s.datetimes[0].tzinfo is None]
    if zoned and plain:
        raise DataError(
            f"series {zoned[0].name!r} has time zones but {plain[0].name!r} has none; give every series's "
            "timestamps a zone (such as Z or +02:00) or none"
        )


def _cut_by_time(series: Sequence[Series], cfg: DataConfig) -> list[Split]:
    stamps = [s.datetimes or [] for s in series]
    pooled = sorted(t for ts in stamps for t in ts[cfg.window :])
    last = len(pooled) - 1
    train_cut = pooled[min(int(len(pooled) * cfg.train_frac), last)]
    test_cut = pooled[min(int(len(pooled) * (cfg.train_frac + cfg.val_frac)), last)]
    return [_clamped(_cut(ts, train_cut, test_cut), cfg.window) for ts in stamps]


def _cut(stamps: list[datetime], train_cut: datetime, test_cut: datetime) -> Split:
    """Targets before ``train_cut`` train, from ``test_cut`` on test, the rest validate."""
    return Split(
        n=len(stamps), train_end=bisect_left(stamps, train_cut), val_end=bisect_left(stamps, test_cut)
    )


def _clamped(split: Split, window: int) -> Split:
    """Part boundaries no earlier than the first target, so every part's windows are well formed."""
    train_end = max(split.train_end, window)
    return Split(n=split.n, train_end=train_end, val_end=max(split.val_end, train_end))


def _check_pooled(splits: Sequence[Split], cfg: DataConfig) -> None:
    totals = {"train": 0, "validation": 0, "test": 0}
    for split in splits:
        for part, count in target_counts(split, cfg.window).items():
            totals[part] += count
    needed = {"train": MIN_TRAIN_TARGETS, "validation": MIN_EVAL_TARGETS, "test": MIN_EVAL_TARGETS}
    for part, count in totals.items():
        if count < needed[part]:
            raise DataError(
                f"the {len(splits)} series leave {count} {part} targets with window {cfg.window} and a "
                f"{cfg.train_frac:.0%}/{cfg.val_frac:.0%}/{1 - cfg.train_frac - cfg.val_frac:.0%} split; "
                f"{part} needs at least {needed[part]}: send longer series or lower --window"
            )


def _split_section(s: Series, split: Split) -> dict[str, Any]:
    section: dict[str, Any] = {**split.sizes, "test_start": split.val_end}
    if s.dates is not None:
        section["test_start_date"] = s.dates[split.val_end] if split.val_end < split.n else None
    return section


def _series_section(s: Series, split: Split) -> dict[str, Any]:
    return {
        "name": s.name,
        "source": s.source,
        "rows": s.rows_read,
        "rows_used": int(s.closes.size),
        "rows_dropped_empty": s.rows_dropped_empty,
        "notes": s.notes,
        "date_start": s.dates[0] if s.dates else None,
        "date_end": s.dates[-1] if s.dates else None,
        "frequency": s.frequency,
        "closes_sha256": s.sha256(),
        "split": _split_section(s, split),
    }


def data_section(series: Sequence[Series], splits: Sequence[Split]) -> dict[str, Any]:
    """The manifest's ``data``: one series as always (``rows_used``, ``closes_sha256``, ... at the top, plus
    ``frequency``), several as ``series`` (one entry each) under a common ``frequency`` ("mixed" when they
    differ), the overall date range and the pooled split."""
    first = series[0]
    if len(series) == 1:
        one = _series_section(first, splits[0])
        return {
            "source": first.source,
            "column": first.column,
            "date_column": first.date_column,
            "rows_read": first.rows_read,
            **{k: one[k] for k in ("rows_used", "rows_dropped_empty", "notes", "date_start", "date_end")},
            "frequency": one["frequency"],
            "closes_sha256": one["closes_sha256"],
            "split": {k: v for k, v in one["split"].items() if k != "test_start_date"},  # as it always was
        }
    entries = [_series_section(s, split) for s, split in zip(series, splits, strict=True)]
    ends = [(ts[0], ts[-1], s.dates) for s in series if (ts := s.datetimes) and s.dates]
    return {
        "column": first.column,
        "date_column": first.date_column,
        "id_column": first.id_column,
        "frequency": common_frequency([s.frequency for s in series]),
        "rows_used": sum(e["rows_used"] for e in entries),
        "date_start": min(ends, key=lambda e: e[0])[2][0] if ends else None,
        "date_end": max(ends, key=lambda e: e[1])[2][-1] if ends else None,
        "split": {
            "by": split_mode(series),
            **{part: sum(e["split"][part] for e in entries) for part in ("train", "validation", "test")},
        },
        "series": entries,
    }
