"""``python -m training evaluate``: score a finished bundle's one-step forecasts on any CSV, as served.

The bundle is loaded and verified by the service's own loader and run through ONNX Runtime, so the
figures describe what users get, not what PyTorch got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from closecast.bundle import load_forecaster
from closecast.errors import BundleInvalid
from closecast.scoring import score_against_naive
from closecast.series import DataError, load_csv, windows


def score_bundle(
    bundle: Path, csv: Path, column: str = "Close", date_column: str | None = None
) -> dict[str, Any]:
    """Score every close of ``csv`` that has a full window of history before it."""
    try:
        forecaster = load_forecaster(bundle, providers="cpu")
    except BundleInvalid as exc:
        raise ValueError(str(exc)) from exc
    series = load_csv(csv, column, date_column or "Date", require_date_column=bool(date_column))
    window = forecaster.window
    if series.closes.size <= window:
        raise DataError(
            f"only {series.closes.size} usable closes; this bundle needs more than {window} (its window)"
        )
    inputs, actual = windows(series.closes, window, series.closes.size, window)
    levels = (80, 95)
    # The service's own batch path: one ONNX Runtime call, the very intervals users are sent.
    items = forecaster.forecast(list(inputs), 1, levels).items
    predicted = np.array([item.forecast[0] for item in items])
    scores = score_against_naive(actual, predicted, inputs[:, -1])
    coverage = {}
    for level in levels:
        lower = np.array([item.intervals[level][0][0] for item in items])
        upper = np.array([item.intervals[level][1][0] for item in items])
        coverage[str(level)] = float(np.mean((actual >= lower) & (actual <= upper)))
    return {
        "bundle": bundle.name,
        "csv": csv.name,
        "date_start": series.dates[window] if series.dates else None,
        "date_end": series.dates[-1] if series.dates else None,
        **scores,
        "beats_naive": bool(scores["skill"] > 0),
        "interval_coverage": coverage,
    }
