"""Walk-forward folds on the torch side: ``python -m training backtest`` (with or without ``--refit``) and
the folds the tuning objective scores (``training/tune.py``).

A refit fold trains the bundle's configuration on ``closes[:start]`` alone with ``fit_and_score`` (its own
chronological train/validation/test split of that past, scaler and interval calibration included), writes
an ordinary bundle to a scratch directory and serves it with the core's loader, so the fold is scored
exactly as the service would have answered on that day.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from closecast.backtest import backtest
from closecast.bundle import load_forecaster
from closecast.config import Config
from closecast.errors import BundleInvalid
from closecast.forecaster import Forecaster
from closecast.series import Series, min_rows


def past_of(series: Series, stop: int) -> Series:
    """The first ``stop`` closes of ``series`` (and their dates), as a series of their own."""
    return replace(
        series,
        closes=series.closes[:stop].copy(),
        dates=series.dates[:stop] if series.dates else None,
        features={name: values[:stop].copy() for name, values in series.features.items()},
        rows_read=stop,
        rows_dropped_empty=0,
        notes=[*series.notes, f"the first {stop} closes only (walk-forward fold)"],
    )


def refit_models(series: Series, config: Config, scratch: Path) -> Callable[[int], Forecaster]:
    """``model_for(start)``: ``config`` trained on ``series``'s closes before ``start``, served from ONNX."""
    from training.pipeline import export_bundle, fit_and_score

    def model_for(start: int) -> Forecaster:
        scored = fit_and_score(past_of(series, start), config, quiet=True)
        out = scratch / f"fold-{start}"
        export_bundle(scored, out, report=False)  # a scratch bundle: served, never looked at
        return load_forecaster(out, providers="cpu")

    return model_for


def run_backtest(bundle: Path, series: Series, *, folds: int, horizon: int, refit: bool) -> dict[str, Any]:
    """``bundle`` backtested on ``series``: as it is, or its configuration retrained on each fold's past."""
    try:
        served = load_forecaster(bundle, providers="cpu")
    except BundleInvalid as exc:
        raise ValueError(str(exc)) from exc
    if not refit:
        return backtest(
            series.closes,
            lambda _start: served,
            served.window,
            folds=folds,
            horizon=horizon,
            dates=series.dates,
            trained_on=served.manifest,
            features={name: list(series.features[name]) for name in served.features} or None,
        )
    config = Config.from_dict(served.manifest["config"])
    with tempfile.TemporaryDirectory(prefix="closecast-backtest-") as scratch:
        result = backtest(
            series.closes,
            refit_models(series, config, Path(scratch)),
            config.data.window,
            folds=folds,
            horizon=horizon,
            dates=series.dates,
            min_past=min_rows(config.data),
            features={name: list(series.features[name]) for name in config.data.features} or None,
        )
    for fold in result["folds"]:
        fold["in_sample"] = False  # each fold's model saw only the closes before it
    return result
