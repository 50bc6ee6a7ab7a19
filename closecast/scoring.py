"""Forecast accuracy next to the naive "tomorrow = today" forecast (numpy only).

Shared by training (bundle metrics), the ``evaluate`` command and the promotion gate of retrain jobs, so a
model is always judged the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from closecast.representation import FloatArray
from closecast.statistics import ALPHA, diebold_mariano, skill_se, verdict, wilson_interval


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
    """Model and naive metrics plus skill = 1 - MAE_model / MAE_naive with its Newey–West standard error,
    and the one-sided Diebold–Mariano test "the model beats naive" (``closecast/statistics.py``).

    ``previous`` is the last known close before each target: the naive forecast. 2-D arrays
    ``[origins, horizon]`` (backtest paths) are scored over every step, their statistics per origin.
    """
    model = error_metrics(actual, predicted)
    naive = error_metrics(actual, previous)
    skill = 1.0 - model["mae"] / naive["mae"] if naive["mae"] > 0 else float("nan")
    return {
        "model": model,
        "naive": naive,
        "skill": float(skill),
        "n": int(np.asarray(actual).size),
        **naive_test(actual, predicted, previous),
    }


def naive_test(actual: FloatArray, predicted: FloatArray, previous: FloatArray) -> dict[str, Any]:
    """``skill_se``, ``dm_stat``, ``dm_pvalue`` (small: the model is better than naive), ``dm_pvalue_worse``,
    ``dm_lag`` and the ``verdict`` at 5%."""
    a = np.asarray(actual, dtype=np.float64)
    abs_model = np.abs(np.asarray(predicted, dtype=np.float64) - a)
    abs_naive = np.abs(np.asarray(previous, dtype=np.float64) - a)
    test = diebold_mariano(abs_model, abs_naive)
    return {
        "skill_se": skill_se(abs_model, abs_naive),
        **test.as_dict(),
        "verdict": verdict(test.pvalue, test.pvalue_worse),
    }


def beats_naive(scores: dict[str, Any], alpha: float = ALPHA) -> bool:
    """True only when the Diebold–Mariano test says the model is better than naive at ``alpha``."""
    p = scores.get("dm_pvalue")
    return bool(p is not None and p < alpha)


def coverage_interval(inside: FloatArray) -> list[float]:
    """The Wilson 95% interval ``[low, high]`` of the share of ``True`` in ``inside``."""
    hits = np.asarray(inside, dtype=bool)
    return list(wilson_interval(int(hits.sum()), int(hits.size)))


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


IN_SAMPLE_RULE = (
    "a backtest fold is flagged in_sample when its closes overlap this model's own training series: the "
    "series sent matches a training series' closes_sha256 over its recorded rows (at the start, or at its "
    "date_start when dates are sent) and the fold has targets before that series' test_start; a series the "
    "model never saw has no in_sample fold, whatever its dates"
)


def is_untrained(manifest: dict[str, Any]) -> bool:
    """No epoch beat the drift-only starting weights on the validation loss (``training.best_epoch`` 0)."""
    training = manifest.get("training", {})
    if "untrained" in training:
        return bool(training["untrained"])
    return training.get("best_epoch") == 0


def naive_verdict(manifest: dict[str, Any]) -> dict[str, Any]:
    """The model card's statistics: test ``skill_se`` and ``dm_pvalue`` (null for a bundle written before
    they were recorded), the ``verdict`` against naive, ``untrained`` and what ``in_sample`` means."""
    test = manifest.get("metrics", {}).get("test", {})
    return {
        "skill_se": test.get("skill_se"),
        "dm_pvalue": test.get("dm_pvalue"),
        "verdict": test.get("verdict", "not tested (the bundle predates the Diebold–Mariano test)"),
        "untrained": is_untrained(manifest),
        "in_sample_rule": IN_SAMPLE_RULE,
    }
