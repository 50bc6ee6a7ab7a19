"""One training run in two steps: ``fit_and_score`` (parts -> fit -> metrics vs naive -> interval calibration,
no files) and ``export_bundle`` (ONNX + TorchScript -> parity -> the core's bundle writer).

``bench/skill.py`` runs the first step alone to compare recipes; ``run_training`` runs both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from closecast.bundle import (
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_NAME,
    REPORT_FILE,
    TORCHSCRIPT_FILE,
    FitSummary,
    IntervalCalibration,
    build_manifest,
    write_bundle,
    write_scaler,
)
from closecast.config import Config
from closecast.representation import Scaler, window_volatility
from closecast.scoring import interval_coverage, score_against_naive
from closecast.series import Series
from training.export import check_parity, export_onnx, export_torchscript, onnx_session
from training.parts import Part, Prepared, prepare
from training.report import write_report
from training.train import FitResult, ProgressFn, fit, predict_scaled

INTERVAL_PROBABILITIES = [round(p, 3) for p in np.arange(0.005, 1.0, 0.005)]
INTERVAL_LEVELS = (80, 95)  # the test coverage recorded in the manifest
VOLATILITY_FLOOR = 0.25  # of the training returns' std: a flat input window still gets a real interval
SAMPLE_WINDOWS = 3


@dataclass(frozen=True)
class ScoredModel:
    """A fitted network with its metrics and interval calibration: everything a bundle needs but its files."""

    series: Series | Sequence[Series]  # several: pooled, split by time (closecast.collection)
    config: Config
    parts: Prepared
    fitted: FitResult
    test_forecast: np.ndarray  # [N_test] one-step forecasts in price units
    test_scores: dict[str, Any]  # score_against_naive on the test part
    validation_scores: dict[str, Any]
    intervals: IntervalCalibration


def forecast_prices(model: torch.nn.Module, part: Part, scaler: Scaler) -> np.ndarray:
    """One-step forecasts of a part's targets in price units, from the torch model (one forward pass)."""
    return part.last * np.exp(scaler.inverse(predict_scaled(model, part.x)))


def fit_and_score(
    series: Series | Sequence[Series],
    config: Config,
    *,
    progress: ProgressFn | None = None,
    quiet: bool = False,
) -> ScoredModel:
    """Fit on the training part, early-stop on validation, score both held-out parts against naive, and
    calibrate prediction intervals on validation residuals (checked on the test part). Writes nothing."""
    parts = prepare(series, config.data)
    train, validation, test = parts.train, parts.validation, parts.test
    fitted = fit(config, train.x, train.y, validation.x, validation.y, progress, quiet)
    test_forecast = forecast_prices(fitted.model, test, parts.scaler)
    validation_forecast = forecast_prices(fitted.model, validation, parts.scaler)
    return ScoredModel(
        series=series,
        config=config,
        parts=parts,
        fitted=fitted,
        test_forecast=test_forecast,
        test_scores=score_against_naive(test.actual, test_forecast, test.last),
        validation_scores=score_against_naive(validation.actual, validation_forecast, validation.last),
        intervals=calibrate_intervals(fitted.model, parts),
    )


def calibrate_intervals(model: torch.nn.Module, parts: Prepared) -> IntervalCalibration:
    """Residual quantiles on the validation part; their coverage on the test part is the honest check."""
    floor = VOLATILITY_FLOOR * parts.scaler.std
    quantiles = np.quantile(_residuals(model, parts.validation, parts.scaler, floor), INTERVAL_PROBABILITIES)
    test_residuals = _residuals(model, parts.test, parts.scaler, floor)
    return IntervalCalibration(
        probabilities=INTERVAL_PROBABILITIES,
        residual_quantiles=quantiles.tolist(),
        volatility_floor=floor,
        n=len(parts.validation.actual),
        test_coverage={
            str(level): interval_coverage(test_residuals, INTERVAL_PROBABILITIES, quantiles, level)
            for level in INTERVAL_LEVELS
        },
    )


def _residuals(model: torch.nn.Module, part: Part, scaler: Scaler, floor: float) -> np.ndarray:
    """Actual minus predicted next log return, per unit of the input window's volatility."""
    residuals = np.log(part.actual / part.last) - scaler.inverse(predict_scaled(model, part.x))
    return residuals / window_volatility(part.closes, floor)


def export_bundle(scored: ScoredModel, out: Path, *, force: bool = False) -> dict[str, Any]:
    """Export, prove parity, and write the bundle to ``out`` with the core's writer; returns the manifest.

    Raises before anything is visible at ``out`` if the exports disagree (``ParityError``)."""
    return write_bundle(out, partial(_write_files, scored), force=force)


def _write_files(scored: ScoredModel, tmp: Path) -> dict[str, Any]:
    """Every file of the bundle into ``tmp``; the manifest for them (``write_bundle`` adds the hashes)."""
    parts, fitted = scored.parts, scored.fitted
    seq_len = scored.config.data.window - 1
    export_onnx(fitted.model, tmp / MODEL_FILE, seq_len)
    export_torchscript(fitted.model, tmp / TORCHSCRIPT_FILE, seq_len)
    parity = check_parity(fitted.model, tmp / MODEL_FILE, tmp / TORCHSCRIPT_FILE, parts.test.x)
    write_scaler(tmp, parts.scaler)
    write_report(
        tmp / REPORT_FILE,
        fitted.history,
        fitted.best_epoch,
        parts.test.actual,
        scored.test_forecast,
        scored.test_scores["skill"],
    )
    sample_closes, sample_forecast = _sample(onnx_session(tmp / MODEL_FILE), parts)
    return build_manifest(
        config=scored.config,
        libraries={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        series=scored.series,
        split=parts.splits or parts.split,
        test_scores=scored.test_scores,
        validation_scores=scored.validation_scores,
        intervals=scored.intervals,
        parity=parity,
        fit=FitSummary(fitted.epochs_run, fitted.best_epoch, fitted.seconds, fitted.history),
        sample_closes=sample_closes,
        sample_forecast=sample_forecast,
    )


def _sample(session: ort.InferenceSession, parts: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """The last test windows and the served computation's forecasts: the bundle's self-check."""
    closes, x = parts.test.closes[-SAMPLE_WINDOWS:], parts.test.x[-SAMPLE_WINDOWS:]
    z = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0][:, 0].astype(np.float64)
    return closes, closes[:, -1] * np.exp(parts.scaler.inverse(z))


def run_training(
    series: Series | Sequence[Series],
    config: Config,
    out: Path,
    *,
    force: bool = False,
    quiet: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train on ``series`` (one, or several pooled and split by time) and write the bundle to ``out``;
    returns the manifest.

    Raises before anything is visible at ``out`` if the data are unusable or the exports disagree."""
    scored = fit_and_score(series, config, progress=progress, quiet=quiet)
    return export_bundle(scored, out, force=force)
