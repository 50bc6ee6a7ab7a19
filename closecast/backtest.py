"""Rolling-origin (walk-forward) backtests of a forecaster, shared by ``python -m training backtest`` and
``POST /backtest`` (numpy + ONNX Runtime only).

The targets after the first window are cut into ``folds + 1`` equal blocks, as scikit-learn's
``TimeSeriesSplit`` does: the first block is only history, each later block is one fold. In a fold every
close from which a whole ``horizon``-step path stays inside the fold is a forecast origin; the forecasts of
all origins come from one ONNX Runtime call per step (the forecaster's batch path, the very answers and
intervals ``/forecast`` sends). Every step 1..horizon of every path is scored against the naive forecast
(the origin's last close), and the share of actual closes inside each interval is the coverage.

A fold's model comes from ``model_for(start)``: the served model as it is (folds whose targets include
closes of its own training series before their test part are flagged ``in_sample``: ``closecast/overlap.py``),
or, for ``--refit``, one trained on ``closes[:start]`` only. Each fold and the overall figures carry the
skill's Newey–West standard error and the one-sided Diebold–Mariano test against naive, computed on the
per-origin mean absolute errors (``closecast/statistics.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.errors import InputInvalid, Problem
from closecast.forecaster import Forecaster
from closecast.overlap import Span, overlaps, training_spans
from closecast.representation import sliding_windows
from closecast.scoring import naive_test, score_against_naive

F64 = npt.NDArray[np.float64]
LEVELS = (80, 95)  # interval levels whose coverage is reported
MIN_ORIGINS = 5  # forecast origins per fold at least: fewer would score noise


@dataclass(frozen=True)
class Fold:
    """Targets ``[start, stop)`` of the closes; origins ``[start, stop - horizon]``."""

    index: int
    start: int
    stop: int


def closes_needed(window: int, folds: int, horizon: int, min_past: int = 0) -> int:
    """Fewest closes for ``folds`` folds of at least ``MIN_ORIGINS`` origins each, with at least
    ``min_past`` closes before the first fold (what a refit needs to train on)."""
    n = window + (folds + 1) * (horizon + MIN_ORIGINS - 1)
    while plan_folds_or_none(n, window, folds, horizon, min_past) is None:
        n += 1
    return n


def plan_folds_or_none(n: int, window: int, folds: int, horizon: int, min_past: int = 0) -> list[Fold] | None:
    size = (n - window) // (folds + 1)
    if size - horizon + 1 < MIN_ORIGINS:
        return None
    first = n - folds * size
    if first < min_past:
        return None
    return [Fold(k, first + k * size, first + (k + 1) * size) for k in range(folds)]


def plan_folds(n: int, window: int, folds: int, horizon: int, min_past: int = 0) -> list[Fold]:
    """The folds of ``n`` closes, or ``InputInvalid`` saying how many closes are needed."""
    planned = plan_folds_or_none(n, window, folds, horizon, min_past)
    if planned is not None:
        return planned
    needed = closes_needed(window, folds, horizon, min_past)
    past = f" and {min_past} closes to train on before the first fold" if min_past else ""
    raise InputInvalid(
        [
            Problem(
                ("body", "closes"),
                f"closes has {n} values but {folds} folds of horizon {horizon} with window {window} need at "
                f"least {needed} (each fold {MIN_ORIGINS}+ forecast origins, one block of history "
                f"first{past}); send at least {needed} closes or ask for fewer folds",
                "series_too_short_for_backtest",
                n,
            )
        ]
    )


def _fold_paths(closes: F64, fold: Fold, window: int, horizon: int) -> tuple[F64, F64]:
    """Input windows ``[N, window]`` of the fold's origins and their actual paths ``[N, horizon]``."""
    origins = np.arange(fold.start, fold.stop - horizon + 1)
    inputs = np.asarray(sliding_windows(closes, window), np.float64)[origins - window]  # closes[o-window : o]
    actual = np.asarray(sliding_windows(closes, horizon), np.float64)[origins]  # closes[o : o+horizon]
    return inputs, actual


def _fold_features(
    features: Mapping[str, Sequence[float]] | None, fold: Fold, window: int, horizon: int
) -> list[dict[str, F64]] | None:
    """Each origin's feature windows (aligned with its closes' window), or None without features."""
    if not features:
        return None
    columns = {
        name: _fold_paths(np.asarray(v, np.float64), fold, window, horizon)[0] for name, v in features.items()
    }
    count = len(next(iter(columns.values())))
    return [{name: w[i] for name, w in columns.items()} for i in range(count)]


def score_paths(
    model: Forecaster, inputs: F64, actual: F64, horizon: int, features: list[dict[str, F64]] | None = None
) -> dict[str, Any]:
    """Forecast every origin together (one ONNX Runtime call per step); score every step against naive.
    ``features[i]`` are origin i's feature windows, for a model that reads them."""
    items = model.forecast(list(inputs), horizon, LEVELS, None, features).items
    predicted = np.array([item.forecast for item in items], dtype=np.float64)  # [N, H]
    naive = np.repeat(inputs[:, -1:], horizon, axis=1)
    scores = score_against_naive(actual, predicted, naive)  # [N, H]: the test on per-origin mean errors
    coverage = {}
    for level in LEVELS:
        lower = np.array([item.intervals[level][0] for item in items], dtype=np.float64)
        upper = np.array([item.intervals[level][1] for item in items], dtype=np.float64)
        coverage[str(level)] = float(np.mean((actual >= lower) & (actual <= upper)))
    return {**scores, "origins": len(items), "coverage": coverage, "_paths": (actual, predicted, naive)}


def backtest(
    closes: Sequence[float] | F64,
    model_for: Callable[[int], Forecaster],
    window: int,
    *,
    folds: int = 5,
    horizon: int = 1,
    dates: Sequence[str] | None = None,
    trained_on: dict[str, Any] | None = None,
    min_past: int = 0,
    features: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """``{"folds": [...], "overall": {...}}`` for ``closes`` (oldest first, validated by the caller).

    ``model_for(start)`` returns the model that forecasts the fold whose first target is ``closes[start]``;
    a refit one must not have seen ``closes[start:]``. The served model may have: with ``trained_on`` (its
    manifest), folds with targets among its own training closes are flagged ``in_sample`` (without it,
    ``in_sample`` is null). ``min_past`` closes must precede the first fold (what a refit needs to train on).
    """
    c = np.asarray(closes, dtype=np.float64)
    spans = training_spans(trained_on, c, dates) if trained_on is not None else None
    rows, paths = [], []
    for fold in plan_folds(c.size, window, folds, horizon, min_past):
        model = model_for(fold.start)
        inputs, actual = _fold_paths(c, fold, window, horizon)
        row = score_paths(model, inputs, actual, horizon, _fold_features(features, fold, window, horizon))
        paths.append(row.pop("_paths"))
        rows.append(_fold_row(fold, row, dates, spans, model.version))
    overall = _overall(rows)
    overall.update(naive_test(*(np.concatenate(p) for p in zip(*paths, strict=True))))
    return {"folds": rows, "overall": overall}


def _fold_row(
    fold: Fold, row: dict[str, Any], dates: Sequence[str] | None, spans: list[Span] | None, version: str
) -> dict[str, Any]:
    return {
        "fold": fold.index,
        "start": fold.start,
        "stop": fold.stop,
        "date_start": dates[fold.start] if dates else None,
        "date_end": dates[fold.stop - 1] if dates else None,
        **row,
        "in_sample": overlaps(fold.start, fold.stop, spans),
        "model_version": version,
    }


def _pooled(rows: list[dict[str, Any]], weights: F64, *path: str, power: int = 1) -> float:
    """The ``n``-weighted mean of ``row[path[0]][path[1]]...`` (raised to ``power``) over the folds."""
    values = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value[key]
        values.append(float(value) ** power)
    return float(np.average(values, weights=weights))


def _overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over every scored step of every fold (equal-sized folds: the mean of the folds)."""
    weights = np.array([r["n"] for r in rows], dtype=np.float64)
    metrics = {
        who: {
            "mae": _pooled(rows, weights, who, "mae"),
            "rmse": float(np.sqrt(_pooled(rows, weights, who, "rmse", power=2))),
            "mape": _pooled(rows, weights, who, "mape"),
        }
        for who in ("model", "naive")
    }
    naive_mae = metrics["naive"]["mae"]
    return {
        **metrics,
        "skill": 1.0 - metrics["model"]["mae"] / naive_mae if naive_mae > 0 else float("nan"),
        "n": int(weights.sum()),
        "folds": len(rows),
        "coverage": {str(lv): _pooled(rows, weights, "coverage", str(lv)) for lv in LEVELS},
        "folds_beating_naive": sum(1 for r in rows if r["skill"] > 0),
    }
