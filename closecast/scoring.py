"""Forecast accuracy next to the naive "tomorrow = today" forecast (numpy only).

Shared by training (bundle metrics), the ``evaluate`` command and the promotion gate of retrain jobs, so a
model is always judged the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from closecast.representation import FloatArray


def error_metrics(actual: FloatArray, predicted: FloatArray) -> dict[str, float]:
    """MAE and RMSE in price units, MAPE in percent."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    err = p - a
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err) / np.abs(a)) * 100.0),
    }


def score_against_naive(actual: FloatArray, predicted: FloatArray, previous: FloatArray) -> dict[str, Any]:
    """Model and naive metrics plus skill = 1 - MAE_model / MAE_naive (> 0 means the model beats naive).

    ``previous`` is the last known close before each target: the naive forecast.
    """
    model = error_metrics(actual, predicted)
    naive = error_metrics(actual, previous)
    skill = 1.0 - model["mae"] / naive["mae"] if naive["mae"] > 0 else float("nan")
    return {"model": model, "naive": naive, "skill": float(skill), "n": int(np.asarray(actual).size)}


def interval_coverage(
    residuals: FloatArray, probabilities: Sequence[float] | FloatArray, quantiles: FloatArray, level: int
) -> float:
    """Share of one-step residuals (log-return units) inside the central ``level``% interval."""
    p_lo = (1 - level / 100) / 2
    lo, hi = np.interp([p_lo, 1 - p_lo], np.asarray(probabilities, dtype=np.float64), quantiles)
    r = np.asarray(residuals, dtype=np.float64)
    return float(np.mean((r >= lo) & (r <= hi)))


def score_pooled(parts: Sequence[tuple[FloatArray, FloatArray, FloatArray]]) -> dict[str, Any]:
    """Several series scored together: ``score_against_naive`` on errors relative to each last close.

    Price errors of an index at 6000 and a stock at 20 cannot be added; relative ones can, and each series
    then weighs by its number of forecasts and its volatility. ``parts`` are (actual, predicted, previous).
    """
    actual = np.concatenate([np.asarray(a, np.float64) / np.asarray(p, np.float64) for a, _, p in parts])
    predicted = np.concatenate([np.asarray(f, np.float64) / np.asarray(p, np.float64) for _, f, p in parts])
    previous = np.ones_like(actual)
    return {**score_against_naive(actual, predicted, previous), "units": "relative_to_last_close"}
