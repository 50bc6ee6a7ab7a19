"""The model bundle format in one place: writing, hashing, reading and verifying (``models/README.md``).

Writing: everything goes to a temporary directory renamed into place, so a reader (the service, another job)
sees either no bundle or a complete one whose ``manifest.json`` lists the sha256 of every other file.

Loading checks, in order, each failing with ``BundleInvalid`` and a message naming what failed: the manifest
is readable and of a known ``format_version``; every file in ``manifest["files"]`` exists and has its sha256;
``scaler.json`` parses; ONNX Runtime opens ``model.onnx`` with the input and output the manifest names;
and the forecaster reproduces ``manifest["sample"]`` within its relative tolerance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import closecast
from closecast.collection import data_section
from closecast.config import Config
from closecast.errors import BundleInvalid, ProviderUnavailable
from closecast.forecaster import Forecaster
from closecast.providers import cuda_unavailable
from closecast.representation import REPRESENTATION, Scaler
from closecast.series import Series, Split

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"  # the served network
SCALER_FILE = "scaler.json"
TORCHSCRIPT_FILE = "model.pt"  # the same network for torch users; never served
REPORT_FILE = "report.png"  # loss curves and the test forecast, for a human
INPUT_NAME = "returns"  # the ONNX graph's input [batch, window-1, 1] and output [batch, 1] tensors
OUTPUT_NAME = "next_return"
SAMPLE_TOLERANCE = 1e-6  # relative, on the forecast price: how closely a loader must replay the sample
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDER_CHOICES: dict[str, list[str]] = {"auto": [CUDA, CPU], "cuda": [CUDA, CPU], "cpu": [CPU]}


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """``manifest.json`` as a dict, refused unless its ``format_version`` is one this loader knows."""
    path = f"{bundle_dir.name}/{MANIFEST}"  # messages reach HTTP answers: no absolute paths
    try:
        manifest = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleInvalid(f"{path} does not exist; {bundle_dir.name} is not a model bundle") from exc
    except OSError as exc:  # its str() would name the absolute path
        raise BundleInvalid(f"{path} is not readable: {exc.strerror or type(exc).__name__}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleInvalid(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleInvalid(f"{path} holds a {type(manifest).__name__}, expected a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleInvalid(
            f"{path}: format_version is {version!r} but this service reads format_version {FORMAT_VERSION}; "
            f"serve it with a matching closecast release"
        )
    for key in ("files", "input", "intervals", "sample"):
        if not isinstance(manifest.get(key), dict):
            raise BundleInvalid(f"{path}: the {key!r} section is missing or not an object")
    return manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Every file in ``manifest["files"]`` exists with its sha256, and the served files are among them."""
    files: dict[str, Any] = manifest["files"]
    for required in (MODEL_FILE, SCALER_FILE):
        if required not in files:
            raise BundleInvalid(
                f"{bundle_dir.name}: manifest files lists no sha256 for {required}; refusing "
                f"to serve an unverified file"
            )
    for name, expected in files.items():
        path = bundle_dir / name
        if Path(name).name != name or name in {MANIFEST, "", ".", ".."}:
            raise BundleInvalid(
                f"{bundle_dir.name}: manifest files names {name!r}, which is not a file of the bundle"
            )
        if not path.is_file():
            raise BundleInvalid(f"{bundle_dir.name}/{name} is missing (the manifest lists it)")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleInvalid(
                f"{bundle_dir.name}/{name} is damaged: sha256 {actual} but the manifest expects {expected}"
            )


def load_scaler(bundle_dir: Path) -> Scaler:
    path = bundle_dir / SCALER_FILE
    try:
        return Scaler.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc  # an OSError's str() names the full path
        raise BundleInvalid(f"{bundle_dir.name}/{SCALER_FILE} is not a usable scaler: {reason}") from exc


def open_session(model_path: Path, providers: str = "auto", threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime session on the providers the setting asks for (CUDA first, CPU fallback)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only; CUDA fallback is reported by our own log line
    why_not_cuda = cuda_unavailable() if providers != "cpu" else None  # never ask ORT for what cannot load
    if why_not_cuda and providers == "cuda":
        raise ProviderUnavailable(
            f"CLOSECAST_PROVIDERS is 'cuda' but {why_not_cuda}; install CUDA and cuDNN where the loader "
            f"finds them (LD_LIBRARY_PATH), or set CLOSECAST_PROVIDERS=auto to fall back to the CPU"
        )
    wanted = [CPU] if why_not_cuda else PROVIDER_CHOICES[providers]
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=wanted)
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for unreadable models
        shown = f"{model_path.parent.name}/{model_path.name}"  # ORT names the full path; answers must not
        reason = str(exc).replace(str(model_path), shown)
        raise BundleInvalid(f"ONNX Runtime cannot open {shown}: {reason}") from exc
    obtained = session.get_providers()[0]
    if providers == "cuda" and obtained != CUDA:
        raise ProviderUnavailable(
            f"CLOSECAST_PROVIDERS is 'cuda' but ONNX Runtime obtained {obtained} (is a GPU with CUDA and "
            f"cuDNN visible?); set CLOSECAST_PROVIDERS=auto to fall back to the CPU"
        )
    if obtained != wanted[0]:
        log.warning("ONNX Runtime could not use %s; falling back to %s", wanted[0], obtained)
    return session


def check_contract(session: ort.InferenceSession, manifest: dict[str, Any], name: str) -> None:
    """The ONNX graph takes and returns the tensors the manifest names."""
    contract = manifest["input"]
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    window = contract.get("window")
    if not isinstance(window, int) or window < 3:
        raise BundleInvalid(f"{name}: input.window is {window!r}; expected an integer >= 3")
    if contract.get("name") not in inputs:
        raise BundleInvalid(
            f"{name}: model.onnx has inputs {sorted(inputs)} but the manifest names {contract.get('name')!r}"
        )
    shape = inputs[contract["name"]]
    if len(shape) != 3 or shape[1:] != [window - 1, 1]:
        raise BundleInvalid(f"{name}: model.onnx input shape is {shape}; expected ['batch', {window - 1}, 1]")
    if contract.get("output_name") not in outputs:
        raise BundleInvalid(
            f"{name}: model.onnx has outputs {outputs} but the manifest names {contract.get('output_name')!r}"
        )


def check_sample(forecaster: Forecaster, manifest: dict[str, Any], name: str) -> None:
    """Replay ``manifest["sample"]`` and refuse the bundle unless it reproduces the recorded forecasts."""
    sample = manifest["sample"]
    try:
        closes = np.asarray(sample["closes"], dtype=np.float64)
        expected = np.asarray(sample["forecast"], dtype=np.float64).reshape(-1)
        tolerance = float(sample["tolerance"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInvalid(f"{name}: manifest sample is unusable: {exc!r}") from exc
    if closes.ndim != 2 or closes.shape[1] != forecaster.window or len(expected) != len(closes):
        raise BundleInvalid(
            f"{name}: manifest sample closes have shape {list(closes.shape)} and forecast "
            f"{len(expected)} values; expected [k, {forecaster.window}] and k"
        )
    actual = forecaster.predict_closes(closes, 1)[:, 0]
    relative = np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    worst = int(np.argmax(relative))
    if not np.isfinite(relative).all() or relative[worst] > tolerance:
        raise BundleInvalid(
            f"{name}: sample {worst} forecasts {actual[worst]!r} but the manifest expects "
            f"{expected[worst]!r} (relative error {relative[worst]:.3g} > tolerance {tolerance:g}); "
            f"the model does not reproduce its training-time output"
        )


def load_forecaster(bundle_dir: Path, providers: str = "auto", ort_threads: int = 1) -> Forecaster:
    """Load and fully verify one bundle directory; raises ``BundleInvalid`` (or ``ProviderUnavailable``)."""
    name = bundle_dir.name
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    scaler = load_scaler(bundle_dir)
    session = open_session(bundle_dir / MODEL_FILE, providers, ort_threads)
    check_contract(session, manifest, name)
    _check_intervals(manifest["intervals"], name)
    forecaster = Forecaster(session, scaler, manifest, version=name)
    check_sample(forecaster, manifest, name)
    log.info("model %s verified; ONNX Runtime provider %s", name, forecaster.provider)
    return forecaster


def _check_intervals(intervals: dict[str, Any], name: str) -> None:
    """Interval quantiles the forecaster can interpolate: same length, increasing, finite, inside (0, 1)."""
    try:
        probabilities = np.asarray(intervals["probabilities"], dtype=np.float64)
        quantiles = np.asarray(intervals["residual_quantiles"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInvalid(f"{name}: manifest intervals are unusable: {exc!r}") from exc
    if probabilities.ndim != 1 or probabilities.shape != quantiles.shape or len(probabilities) < 2:
        raise BundleInvalid(
            f"{name}: intervals.probabilities and residual_quantiles must be lists of one "
            f"length >= 2; got shapes {list(probabilities.shape)} and {list(quantiles.shape)}"
        )
    units, floor = intervals.get("units", "log_return"), intervals.get("volatility_floor", 0.0)
    if units not in ("log_return", "window_volatility"):
        raise BundleInvalid(
            f"{name}: intervals.units is {units!r}; this service reads 'log_return' and 'window_volatility'"
        )
    if not isinstance(floor, int | float) or not np.isfinite(floor) or floor < 0:
        raise BundleInvalid(f"{name}: intervals.volatility_floor is {floor!r}; expected a finite number >= 0")
    ordered = np.all(np.diff(probabilities) > 0) and np.all(np.diff(quantiles) >= 0)
    inside = np.isfinite(quantiles).all() and probabilities[0] > 0 and probabilities[-1] < 1
    if not (ordered and inside):
        raise BundleInvalid(
            f"{name}: intervals must have increasing probabilities inside (0, 1) and finite, "
            f"non-decreasing residual_quantiles; got {probabilities.tolist()} and "
            f"{quantiles.tolist()}"
        )


# --- writing ---------------------------------------------------------------------------------------------


def check_destination(out: Path, force: bool) -> None:
    """Refuse an existing non-empty directory unless ``force``: bundles are immutable."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(
            f"{out} exists and is not empty; bundles are immutable: choose a new --out or pass --force"
        )


def write_bundle(out: Path, fill: Callable[[Path], dict[str, Any]], force: bool = False) -> dict[str, Any]:
    """Let ``fill(tmpdir)`` write the files and return the manifest; hash, write it, rename into place.

    Any exception leaves nothing behind at ``out`` (and the temporary directory is removed).
    """
    check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700: a service running as another user could not read it
        manifest = fill(tmp)
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in tmp.iterdir():  # durable before visible
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():  # --force: keep the old bundle aside until the new one is in place
            trash = out.parent / f".trash-{out.name}-{os.getpid()}"
            os.replace(out, trash)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(trash, out)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def write_scaler(bundle_dir: Path, scaler: Scaler) -> None:
    """``scaler.json``, the file ``load_scaler`` reads back."""
    text = json.dumps(scaler.to_dict(), indent=2) + "\n"
    (bundle_dir / SCALER_FILE).write_text(text, encoding="utf-8")


# --- the manifest (every field is documented in models/README.md) -------------------------------------------


@dataclass(frozen=True)
class IntervalCalibration:
    """One-step residual quantiles in units of each input window's volatility: ``manifest["intervals"]``."""

    probabilities: list[float]
    residual_quantiles: list[float]
    volatility_floor: float  # the smallest window volatility divided by, in log-return units
    n: int  # validation residuals the quantiles come from
    test_coverage: dict[str, float]  # "80" -> share of test residuals inside the central 80% interval


@dataclass(frozen=True)
class FitSummary:
    """How the fit went: ``manifest["training"]``."""

    epochs_run: int
    best_epoch: int
    seconds: float
    history: dict[str, list[float]]  # train_loss, val_loss, lr per epoch


def build_manifest(
    *,
    config: Config,
    libraries: Mapping[str, str],
    series: Series | Sequence[Series],
    split: Split | Sequence[Split],
    test_scores: dict[str, Any],
    validation_scores: dict[str, Any],
    intervals: IntervalCalibration,
    parity: Mapping[str, float | int],
    fit: FitSummary,
    sample_closes: np.ndarray,
    sample_forecast: np.ndarray,
) -> dict[str, Any]:
    """The manifest of a new bundle, ``files`` aside (``write_bundle`` adds the hashes).

    ``libraries`` are the versions of the packages that made the files (torch, onnx, onnxruntime); the
    closecast and Python versions are added here. Scores are ``scoring.score_against_naive`` results.
    """
    return {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"closecast": closecast.__version__, "python": platform.python_version(), **libraries},
        "config": config.to_dict(),
        "input": _input_section(config.data.window),
        "data": data_section(
            [series] if isinstance(series, Series) else series, [split] if isinstance(split, Split) else split
        ),
        "metrics": {
            "test": test_scores,
            "validation": validation_scores,
            "beats_naive": bool(test_scores["skill"] > 0),
        },
        "intervals": _intervals_section(intervals),
        "parity": dict(parity),
        "training": {
            "epochs_run": fit.epochs_run,
            "best_epoch": fit.best_epoch,
            "seconds": round(fit.seconds, 3),
            "history": fit.history,
        },
        "sample": {
            "closes": np.asarray(sample_closes).tolist(),
            "forecast": np.asarray(sample_forecast).tolist(),
            "tolerance": SAMPLE_TOLERANCE,
        },
    }


def _input_section(window: int) -> dict[str, Any]:
    """The tensor contract ``check_contract`` holds the ONNX graph to."""
    return {
        "window": window,
        "name": INPUT_NAME,
        "shape": ["batch", window - 1, 1],
        "dtype": "float32",
        "output_name": OUTPUT_NAME,
        "output_shape": ["batch", 1],
        "representation": REPRESENTATION,
    }


def _intervals_section(calibration: IntervalCalibration) -> dict[str, Any]:
    """In the units ``Forecaster`` reads: window volatility, widened by sqrt(h) at step h."""
    return {
        "source": "validation",
        "units": "window_volatility",
        "volatility_floor": calibration.volatility_floor,
        "horizon_scaling": "sqrt",
        "n": calibration.n,
        "probabilities": calibration.probabilities,
        "residual_quantiles": calibration.residual_quantiles,
        "test_coverage": calibration.test_coverage,
    }
