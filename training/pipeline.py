"""One training run end to end: series -> split/scale/window -> fit -> score -> export -> parity -> bundle."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

import training
from closecast.bundle import FORMAT_VERSION, write_bundle
from closecast.collection import data_section
from closecast.config import Config
from closecast.representation import REPRESENTATION, Scaler, window_volatility
from closecast.scoring import interval_coverage, score_against_naive
from closecast.series import Series
from training.dataset import Part, Prepared, prepare
from training.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    check_parity,
    export_onnx,
    export_torchscript,
    onnx_session,
)
from training.report import write_report
from training.train import FitResult, ProgressFn, fit, predict_scaled

INTERVAL_PROBABILITIES = [round(p, 3) for p in np.arange(0.005, 1.0, 0.005)]
VOLATILITY_FLOOR = 0.25  # of the training returns' std: a flat input window still gets a real interval
SAMPLE_WINDOWS = 3
SAMPLE_TOLERANCE = 1e-6  # relative, on the forecast price


def forecast_prices(model: torch.nn.Module, part: Part, scaler: Scaler) -> np.ndarray:
    """One-step forecasts of a part's targets in price units, from the torch model (one forward pass)."""
    return part.last * np.exp(scaler.inverse(predict_scaled(model, part.x)))


def _onnx_forecast(session: ort.InferenceSession, part: Part, scaler: Scaler) -> np.ndarray:
    """The serving computation, used for the bundle's self-check sample."""
    z = session.run([OUTPUT_NAME], {INPUT_NAME: part.x})[0][:, 0].astype(np.float64)
    return part.last * np.exp(scaler.inverse(z))


def _interval_section(fitted: FitResult, prep: Prepared) -> dict[str, Any]:
    """One-step residual quantiles on the validation part (log-return units), for prediction intervals."""
    floor = VOLATILITY_FLOOR * prep.scaler.std
    quantiles = np.quantile(_residuals(fitted, prep.validation, prep.scaler, floor), INTERVAL_PROBABILITIES)
    test_residuals = _residuals(fitted, prep.test, prep.scaler, floor)
    return {
        "source": "validation",
        "units": "window_volatility",
        "volatility_floor": floor,
        "horizon_scaling": "sqrt",
        "n": len(prep.validation.actual),
        "probabilities": INTERVAL_PROBABILITIES,
        "residual_quantiles": quantiles.tolist(),
        # how often the one-step intervals held on the test part: the honest check of the quantiles
        "test_coverage": {
            str(level): interval_coverage(test_residuals, INTERVAL_PROBABILITIES, quantiles, level)
            for level in (80, 95)
        },
    }


def _residuals(fitted: FitResult, part: Part, scaler: Scaler, floor: float) -> np.ndarray:
    """Actual minus predicted next log return, per unit of the input window's volatility."""
    residuals = np.log(part.actual / part.last) - scaler.inverse(predict_scaled(fitted.model, part.x))
    return residuals / window_volatility(part.closes, floor)


def _sample(session: ort.InferenceSession, prep: Prepared) -> dict[str, Any]:
    t = prep.test
    part = Part(
        t.closes[-SAMPLE_WINDOWS:], t.actual[-SAMPLE_WINDOWS:], t.x[-SAMPLE_WINDOWS:], t.y[-SAMPLE_WINDOWS:]
    )
    return {
        "closes": part.closes.tolist(),
        "forecast": _onnx_forecast(session, part, prep.scaler).tolist(),
        "tolerance": SAMPLE_TOLERANCE,
    }


def run_training(
    series: Series | Sequence[Series],
    cfg: Config,
    out: Path,
    *,
    force: bool = False,
    quiet: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train on ``series`` (one, or several pooled and split by time) and write the bundle to ``out``;
    returns the manifest.

    Raises before anything is visible at ``out`` if the data are unusable or the exports disagree."""
    prep = prepare(series, cfg.data)
    fitted = fit(cfg, prep.train.x, prep.train.y, prep.validation.x, prep.validation.y, progress, quiet)
    test_forecast = forecast_prices(fitted.model, prep.test, prep.scaler)
    test = score_against_naive(prep.test.actual, test_forecast, prep.test.last)
    val = score_against_naive(
        prep.validation.actual,
        forecast_prices(fitted.model, prep.validation, prep.scaler),
        prep.validation.last,
    )

    def fill(tmp: Path) -> dict[str, Any]:
        seq_len = cfg.data.window - 1
        export_onnx(fitted.model, tmp / "model.onnx", seq_len)
        export_torchscript(fitted.model, tmp / "model.pt", seq_len)
        parity = check_parity(fitted.model, tmp / "model.onnx", tmp / "model.pt", prep.test.x)
        (tmp / "scaler.json").write_text(json.dumps(prep.scaler.to_dict(), indent=2) + "\n", encoding="utf-8")
        write_report(
            tmp / "report.png",
            fitted.history,
            fitted.best_epoch,
            prep.test.actual,
            test_forecast,
            test["skill"],
        )
        return {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": {
                "closecast": training.__version__,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
            },
            "config": cfg.to_dict(),
            "input": {
                "window": cfg.data.window,
                "name": INPUT_NAME,
                "shape": ["batch", seq_len, 1],
                "dtype": "float32",
                "output_name": OUTPUT_NAME,
                "output_shape": ["batch", 1],
                "representation": REPRESENTATION,
            },
            "data": data_section([series] if isinstance(series, Series) else series, prep.splits),
            "metrics": {"test": test, "validation": val, "beats_naive": bool(test["skill"] > 0)},
            "intervals": _interval_section(fitted, prep),
            "parity": parity,
            "training": {
                "epochs_run": fitted.epochs_run,
                "best_epoch": fitted.best_epoch,
                "seconds": round(fitted.seconds, 3),
                "history": fitted.history,
            },
            "sample": _sample(onnx_session(tmp / "model.onnx"), prep),
        }

    return write_bundle(out, fill, force=force)
