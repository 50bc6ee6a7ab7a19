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
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from closecast.errors import BundleInvalid, ProviderUnavailable
from closecast.features import FeatureScaler, parse_names
from closecast.forecaster import Forecaster
from closecast.forecaster_v1 import ForecasterV1
from closecast.forecaster_v2 import ForecasterV2
from closecast.providers import cuda_unavailable
from closecast.representation import Scaler, WindowScaler

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # what training writes (closecast/manifest.py)
# the one place choosing a bundle's forecaster: format 1 (volatility of the training series) keeps serving
FORECASTERS: dict[int, type[Forecaster]] = {1: ForecasterV1, 2: ForecasterV2}
KNOWN_FORMATS = tuple(FORECASTERS)  # what loads
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
        raw = (bundle_dir / MANIFEST).read_bytes()
    except FileNotFoundError as exc:
        raise BundleInvalid(f"{path} does not exist; {bundle_dir.name} is not a model bundle") from exc
    except OSError as exc:  # its str() would name the absolute path
        raise BundleInvalid(f"{path} is not readable: {exc.strerror or type(exc).__name__}") from exc
    return parse_manifest(raw, path)


def parse_manifest(raw: bytes, path: str) -> dict[str, Any]:
    """A manifest's bytes (from a file, or an object store) as a dict, checked as ``read_manifest`` does;
    ``path`` names it in messages."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleInvalid(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleInvalid(f"{path} holds a {type(manifest).__name__}, expected a JSON object")
    version = manifest.get("format_version")
    if version not in KNOWN_FORMATS or isinstance(version, bool):
        raise BundleInvalid(
            f"{path}: format_version is {version!r} but this service reads format_version "
            f"{' or '.join(map(str, KNOWN_FORMATS))}; serve it with a matching closecast release"
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


def load_scaler(bundle_dir: Path, format_version: int = 1) -> Scaler | WindowScaler:
    """``scaler.json`` of the bundle's format: format 1's ``Scaler`` or format 2's ``WindowScaler``."""
    path = bundle_dir / SCALER_FILE
    kind = FORECASTERS[format_version].scaler_type
    try:
        return kind.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc  # an OSError's str() names the full path
        raise BundleInvalid(f"{bundle_dir.name}/{SCALER_FILE} is not a usable scaler: {reason}") from exc


def load_feature_scaler(bundle_dir: Path, manifest: dict[str, Any]) -> FeatureScaler | None:
    """``scaler.json``'s ``features`` section, for the features ``input.features`` lists (in that order)."""
    names = contract_features(manifest, bundle_dir.name)
    if not names:
        return None
    path = bundle_dir / SCALER_FILE
    try:
        features = FeatureScaler.from_dict(json.loads(path.read_text(encoding="utf-8"))["features"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleInvalid(
            f"{bundle_dir.name}/{SCALER_FILE} has no usable features section: {exc!r}"
        ) from exc
    if features.names != names:
        raise BundleInvalid(
            f"{bundle_dir.name}: {SCALER_FILE} has features {list(features.names)} but input.features is "
            f"{list(names)}"
        )
    return features


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
    channels = 1 + len(contract_features(manifest, name))
    shape = inputs[contract["name"]]
    if len(shape) != 3 or shape[1:] != [window - 1, channels]:
        raise BundleInvalid(
            f"{name}: model.onnx input shape is {shape}; expected ['batch', {window - 1}, {channels}]"
        )
    if contract.get("output_name") not in outputs:
        raise BundleInvalid(
            f"{name}: model.onnx has outputs {outputs} but the manifest names {contract.get('output_name')!r}"
        )


def contract_features(manifest: dict[str, Any], name: str) -> tuple[str, ...]:
    """``input.features``: the OHLCV channels after the returns, in order (none for closes-only models)."""
    try:
        features = parse_names(manifest["input"].get("features", []))
    except (TypeError, ValueError, AttributeError) as exc:
        raise BundleInvalid(f"{name}: input.features is unusable: {exc}") from exc
    if features and manifest.get("format_version") == 1:
        raise BundleInvalid(f"{name}: a format-1 bundle cannot read features {list(features)}")
    return features


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
    try:
        features = {k: np.asarray(sample.get("features", {})[k], np.float64) for k in forecaster.features}
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInvalid(f"{name}: manifest sample features are unusable: {exc!r}") from exc
    if any(v.shape != closes.shape for v in features.values()):
        raise BundleInvalid(
            f"{name}: manifest sample features do not have the closes' shape {list(closes.shape)}"
        )
    actual = forecaster.predict_closes(closes, 1, features)[:, 0]
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
    kind = FORECASTERS[manifest["format_version"]]
    scaler = load_scaler(bundle_dir, kind.format_version)
    session = open_session(bundle_dir / MODEL_FILE, providers, ort_threads)
    check_contract(session, manifest, name)
    kind.check_intervals(manifest["intervals"], name)
    forecaster = kind.load(session, scaler, manifest, name, load_feature_scaler(bundle_dir, manifest))
    check_sample(forecaster, manifest, name)
    log.info("model %s verified; ONNX Runtime provider %s", name, forecaster.provider)
    return forecaster


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


def write_scaler(
    bundle_dir: Path, scaler: Scaler | WindowScaler, features: FeatureScaler | None = None
) -> None:
    """``scaler.json``, the file ``load_scaler`` (and ``load_feature_scaler``) reads back."""
    content = scaler.to_dict() if features is None else {**scaler.to_dict(), "features": features.to_dict()}
    text = json.dumps(content, indent=2) + "\n"
    (bundle_dir / SCALER_FILE).write_text(text, encoding="utf-8")
