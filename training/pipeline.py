"""One training run in two steps: ``fit_and_score`` (series -> pooled slices -> fit -> scores and
split-conformal intervals, no files) and ``export_bundle`` (ONNX + TorchScript -> parity -> bundle).

Training writes format-2 bundles (``closecast/representation.py``): returns in units of each window's own
RMS, so one network reads calm and wild series alike and can learn from many at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from importlib.metadata import version  # not `import onnx`: see training/onnx_wire.py
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from closecast.bundle import (
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_NAME,
    REPORT_FILE,
    TORCHSCRIPT_FILE,
    write_bundle,
    write_scaler,
)
from closecast.collection import data_section
from closecast.config import Config
from closecast.manifest import build_manifest
from closecast.representation import WindowScaler
from closecast.series import Series
from closecast.summary import JOB_ID_ENV
from closecast.timeaxis import common_frequency
from training.calibration import Evaluation, evaluate
from training.export import check_parity, export_onnx, export_torchscript, onnx_session
from training.model import CloseLSTM
from training.parts import Pooled, pool
from training.report import Panel
from training.synthetic import LENGTH, dynamics_of, synthetic_series
from training.train import FitResult, ProgressFn, fit, predict_scaled
from training.windowset import WindowSet

SAMPLE_WINDOWS = 3
REPORT_PANELS = 4  # report.png shows the first few series


@dataclass(frozen=True)
class ScoredModel:
    """A fitted network with its scores and intervals: everything a bundle needs but its files."""

    series: list[Series]
    config: Config
    pooled: Pooled
    fitted: FitResult
    evaluation: Evaluation
    augment: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # time.perf_counter() when the run began (the CLI's start, or fit_and_score's)
    steps_s: dict[str, float] = field(default_factory=dict)  # seconds per step, in order (manifest)

    @property
    def test_scores(self) -> dict[str, Any]:
        """Test scores against naive (price units for one series, pooled relative errors for several)."""
        scores: dict[str, Any] = self.evaluation.metrics["test"]
        return scores

    @property
    def test_coverage(self) -> dict[str, float]:
        """Share of test closes inside the 80% and 95% intervals, pooled over the series."""
        coverage: dict[str, float] = self.test_scores["coverage"]
        return coverage


def as_list(series: Series | Sequence[Series]) -> list[Series]:
    return [series] if isinstance(series, Series) else list(series)


def fit_and_score(
    series: Series | Sequence[Series],
    config: Config,
    *,
    synthetic: int = 0,
    progress: ProgressFn | None = None,
    quiet: bool = False,
    started: float | None = None,
    phases: ProgressFn | None = None,
    mirror: bool = False,
) -> ScoredModel:
    """Fit on the pooled training slices (plus ``synthetic`` seeded series of several dynamics, and with
    ``mirror`` every training part's mirror image: ``training.parts``), early-stop on the pooled
    early-stopping slices, calibrate intervals on the calibration slices and score the test slices.
    ``started``: when the run began (``time.perf_counter()``), for the manifest's total; default now.
    ``phases`` hears ``{"phase": ...}`` as the fit and the calibration begin (a job's progress file)."""
    clock = Clock(started)
    series_list = as_list(series)
    pooled = pool(series_list, config.data, synthetic_series(synthetic, seed=config.train.seed), mirror)
    train, val = pooled.dataset("train", with_augment=True), pooled.dataset("early_stop")
    clock.lap("prepare")
    if phases:
        phases({"phase": "training", "epoch": 0, "epochs": config.train.epochs})
    fitted = fit(config, train, val, pooled.scaler, progress, quiet)
    shift = centre_output(fitted.model, train, pooled.scaler) if mirror else None
    clock.lap("fit")
    if phases:
        phases({"phase": "calibrating"})
    frequency = common_frequency([s.frequency for s in series_list])
    evaluation = evaluate(pooled, partial(predict_scaled, fitted.model), frequency, config.train.seed)
    clock.lap("evaluate")
    augment: dict[str, Any] = {
        "synthetic_series": synthetic,
        "length": LENGTH if synthetic else 0,
        "seed": config.train.seed,
    }
    if synthetic or mirror:  # absent keys: a run without them, as bundles made before they existed
        augment |= {"dynamics": dynamics_of(synthetic), "mirrored": mirror}
    if shift is not None:
        augment["output_centred_by"] = shift
    return ScoredModel(series_list, config, pooled, fitted, evaluation, augment, clock.started, clock.steps)


def centre_output(model: CloseLSTM, train: WindowSet, scaler: WindowScaler) -> float:
    """Shift the head's bias so the mean output over the training windows is 0; returns the shift (model
    units). With ``mirror`` the training windows come in mirror pairs, so their mean output is the even part
    of what the network learned. Measured on a mirrored fit of the default model without this step: a
    near-constant upward drift (0.018 of a window's RMS, spread 0.0007 across windows; early stopping
    watches the real series alone, and they rose), which made 87% of its forecasts on a random walk rises.
    What the window says (the odd part) is kept: 49% rises there once the constant is taken out."""
    outputs = np.concatenate([predict_scaled(model, x) for x in train.input_batches(scaler)])
    shift = float(outputs.mean())
    with torch.no_grad():
        model.head.bias.sub_(shift)
    return shift


class Clock:
    """Seconds per step of a run, for the manifest (``training.steps_s``): where the time went."""

    def __init__(self, started: float | None = None, steps: dict[str, float] | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self.steps = dict(steps or {})
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round(self.steps.get(step, 0.0) + now - self._last, 3)
        self._last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def export_bundle(
    scored: ScoredModel,
    out: Path,
    *,
    force: bool = False,
    tuning: Mapping[str, Any] | None = None,
    write_extra: Callable[[Path], None] | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Export, prove parity, and write the bundle to ``out``; returns the manifest.

    ``tuning`` and ``write_extra`` (more files into the bundle) come from a search (``training/tune.py``);
    ``report``: draw ``report.png`` (a refit fold's scratch bundle needs none).
    Raises before anything is visible at ``out`` if the exports disagree (``ParityError``)."""
    return write_bundle(out, partial(_write_files, scored, tuning, write_extra, report), force=force)


def run_training(
    series: Series | Sequence[Series],
    cfg: Config,
    out: Path,
    *,
    force: bool = False,
    quiet: bool = False,
    progress: ProgressFn | None = None,
    synthetic: int = 0,
    started: float | None = None,
    report: bool = True,
    mirror: bool = False,
) -> dict[str, Any]:
    """Train on one or several series and write the bundle to ``out``; returns the manifest. ``report``:
    draw ``report.png``; ``started``: see ``fit_and_score``. ``progress`` hears each epoch and each phase
    (``training``, ``calibrating``, ``exporting``) as it begins."""
    scored = fit_and_score(
        series,
        cfg,
        synthetic=synthetic,
        progress=progress,
        quiet=quiet,
        started=started,
        phases=progress,
        mirror=mirror,
    )
    if progress:
        progress({"phase": "exporting"})
    return export_bundle(scored, out, force=force, report=report)


def _write_files(
    scored: ScoredModel,
    tuning: Mapping[str, Any] | None,
    write_extra: Callable[[Path], None] | None,
    report: bool,
    tmp: Path,
) -> dict[str, Any]:
    """Every file of the bundle into ``tmp``; the manifest for them (``write_bundle`` adds the hashes)."""
    clock = Clock(scored.started, scored.steps_s)
    if write_extra is not None:
        write_extra(tmp)
        clock.lap("extra_files")
    pooled, fitted = scored.pooled, scored.fitted
    seq_len = scored.config.data.window - 1
    test = pooled.dataset("test")
    export_onnx(fitted.model, tmp / MODEL_FILE, seq_len, test.channels)  # the model is on the CPU
    clock.lap("export_onnx")
    export_torchscript(fitted.model, tmp / TORCHSCRIPT_FILE, seq_len, test.channels)
    clock.lap("export_torchscript")
    batches = test.input_batches(pooled.scaler)
    parity = check_parity(fitted.model, tmp / MODEL_FILE, tmp / TORCHSCRIPT_FILE, batches)
    clock.lap("parity")
    write_scaler(tmp, pooled.scaler, pooled.features)
    if report:
        from training.report import write_report  # matplotlib: imported only when a report is drawn

        write_report(tmp / REPORT_FILE, fitted.history, fitted.best_epoch, _panels(scored))
        clock.lap("report")
    sample_closes, sample_forecast, sample_features = _sample(onnx_session(tmp / MODEL_FILE), pooled)
    clock.lap("sample")
    return build_manifest(
        config=scored.config,
        libraries={"torch": torch.__version__, "onnx": version("onnx"), "onnxruntime": ort.__version__},
        data={
            **data_section(scored.series, [s.split for s in pooled.series]),
            "augmentation": scored.augment,  # synthetic series: training windows only
        },
        metrics=scored.evaluation.metrics,
        intervals=scored.evaluation.intervals,
        parity=parity,
        training={
            "epochs_run": fitted.epochs_run,
            "best_epoch": fitted.best_epoch,
            # the drift-only starting weights were never beaten on the validation loss
            "untrained": fitted.best_epoch == 0,
            "seconds": round(fitted.seconds, 3),
            "history": fitted.history,
            "windows": {"train": len(pooled.dataset("train", with_augment=True))},
            "device": fitted.device,
            "fit_s": round(fitted.seconds, 3),  # the epoch loop alone (= seconds)
            "total_s": clock.total(),  # from the run's start to this manifest (imports included from the CLI)
            "steps_s": clock.steps,
            **({"job_id": job} if (job := os.environ.get(JOB_ID_ENV)) else {}),  # trained by a /train job
        },
        sample_closes=sample_closes,
        sample_forecast=sample_forecast,
        sample_features=sample_features,
        tuning=tuning,
    )


def _sample(session: ort.InferenceSession, pooled: Pooled) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The first series' last test windows (closes and features) and the served computation's forecasts:
    the self-check."""
    first = pooled.series[0]
    test = first.slices["test"]
    closes = test.closes[-SAMPLE_WINDOWS:]
    keep = np.arange(len(test.actual))[-SAMPLE_WINDOWS:]
    x, scale, flat = pooled.model_input(test, keep)
    z = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0][:, 0]
    predicted = np.where(flat, 0.0, pooled.scaler.inverse(z.astype(np.float64), scale))
    window = closes.shape[1]
    features = {
        name: np.stack([first.features[name][t - window : t] for t in test.target[keep]]).tolist()
        for name in (pooled.features.names if pooled.features else ())
    }
    return closes, closes[:, -1] * np.exp(predicted), features


def _panels(scored: ScoredModel) -> list[Panel]:
    """The test forecasts and 80%/95% bands of the first few series, with dates when there are any."""
    panels = []
    for s, series in list(zip(scored.pooled.series, scored.series, strict=True))[:REPORT_PANELS]:
        test = scored.evaluation.tests[s.name]
        target = test.windows.target
        dates = series.dates
        x: list[Any] = [datetime.fromisoformat(dates[t]) for t in target] if dates else target.tolist()
        panels.append(
            Panel(
                name=s.name,
                x=x,
                actual=test.windows.actual,
                forecast=test.forecast,
                bands=scored.evaluation.bands[s.name],
                metrics=scored.evaluation.metrics["series"][s.name]["test"],
            )
        )
    return panels
