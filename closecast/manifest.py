"""The manifest of a new format-2 bundle (every field is documented in ``models/README.md``).

Training fills it from what it measured; ``closecast.bundle.write_bundle`` adds the file hashes. Format-1
manifests are never written any more, only read (``closecast.bundle``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

import closecast
from closecast.bundle import FORMAT_VERSION, INPUT_NAME, OUTPUT_NAME, SAMPLE_TOLERANCE
from closecast.config import Config
from closecast.representation import REPRESENTATION_V2
from closecast.series import Series, Split


def input_section(window: int) -> dict[str, Any]:
    """The tensor contract ``check_contract`` holds the ONNX graph to."""
    return {
        "window": window,
        "name": INPUT_NAME,
        "shape": ["batch", window - 1, 1],
        "dtype": "float32",
        "output_name": OUTPUT_NAME,
        "output_shape": ["batch", 1],
        "representation": REPRESENTATION_V2,
    }


def _one_series(series: Series, split: Split) -> dict[str, Any]:
    return {
        "source": series.source,
        "column": series.column,
        "date_column": series.date_column,
        "rows_read": series.rows_read,
        "rows_used": int(series.closes.size),
        "rows_dropped_empty": series.rows_dropped_empty,
        "notes": series.notes,
        "date_start": series.dates[0] if series.dates else None,
        "date_end": series.dates[-1] if series.dates else None,
        "closes_sha256": series.sha256(),
        "split": {**split.sizes, "test_start": split.val_end},
    }


def data_section(
    series: Sequence[Series], splits: Sequence[Split], names: Sequence[str], augment: Mapping[str, Any]
) -> dict[str, Any]:
    """One series: today's fields. Several: every series under ``series`` (name first) and the overall
    date range. ``augment`` says which synthetic series trained with them (training windows only)."""
    if len(series) == 1:
        section = _one_series(series[0], splits[0])
    else:
        each = [
            {"name": name, **_one_series(s, split)}
            for name, s, split in zip(names, series, splits, strict=True)
        ]
        starts = [e["date_start"] for e in each if e["date_start"]]
        ends = [e["date_end"] for e in each if e["date_end"]]
        section = {
            "source": ", ".join(names),
            "rows_used": int(sum(s.closes.size for s in series)),
            "date_start": min(starts) if starts else None,
            "date_end": max(ends) if ends else None,
            "series": each,
        }
    return {**section, "augmentation": dict(augment)}


def build_manifest(
    *,
    config: Config,
    libraries: Mapping[str, str],
    data: dict[str, Any],
    metrics: dict[str, Any],
    intervals: dict[str, Any],
    parity: Mapping[str, float | int],
    training: dict[str, Any],
    sample_closes: np.ndarray,
    sample_forecast: np.ndarray,
) -> dict[str, Any]:
    """The manifest of a new bundle, ``files`` aside (``write_bundle`` adds the hashes)."""
    return {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"closecast": closecast.__version__, "python": platform.python_version(), **libraries},
        "config": config.to_dict(),
        "input": input_section(config.data.window),
        "data": data,
        "metrics": metrics,
        "intervals": intervals,
        "parity": dict(parity),
        "training": training,
        "sample": {
            "closes": np.asarray(sample_closes).tolist(),
            "forecast": np.asarray(sample_forecast).tolist(),
            "tolerance": SAMPLE_TOLERANCE,
        },
    }
