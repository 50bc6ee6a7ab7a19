"""The manifest of a new format-2 bundle (every field is documented in ``models/README.md``).

Training fills it from what it measured; ``closecast.bundle.write_bundle`` adds the file hashes. Format-1
manifests are never written any more, only read (``closecast.bundle``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

import closecast
from closecast.bundle import FORMAT_VERSION, INPUT_NAME, OUTPUT_NAME, SAMPLE_TOLERANCE
from closecast.config import Config
from closecast.features import FEATURE_HORIZON_POLICY, KINDS
from closecast.representation import REPRESENTATION_V2


def input_section(window: int, features: Sequence[str] = ()) -> dict[str, Any]:
    """The tensor contract ``check_contract`` holds the ONNX graph to; with features, their channels follow
    the returns in the order listed (``closecast/features.py``)."""
    section: dict[str, Any] = {
        "window": window,
        "name": INPUT_NAME,
        "shape": ["batch", window - 1, 1 + len(features)],
        "dtype": "float32",
        "output_name": OUTPUT_NAME,
        "output_shape": ["batch", 1],
        "representation": REPRESENTATION_V2,
    }
    if features:
        section["features"] = list(features)
        section["channels"] = ["return", *features]
        section["feature_kinds"] = {name: KINDS[name] for name in features}
        section["feature_horizon_policy"] = FEATURE_HORIZON_POLICY
    return section


def build_manifest(
    *,
    config: Config,
    libraries: Mapping[str, str],
    data: dict[str, Any],
    metrics: dict[str, Any],
    intervals: dict[str, Any],
    parity: Mapping[str, float | int],
    training: dict[str, Any],
    sample_closes: np.ndarray,
    sample_forecast: np.ndarray,
    sample_features: Mapping[str, Any]
    | None = None,  # feature windows of the sample, when the model reads them
    tuning: Mapping[str, Any] | None = None,  # a search's summary (training/tune.py): manifest["tuning"]
) -> dict[str, Any]:
    """The manifest of a new bundle, ``files`` aside (``write_bundle`` adds the hashes)."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"closecast": closecast.__version__, "python": platform.python_version(), **libraries},
        "config": config.to_dict(),
        "input": input_section(config.data.window, config.data.features),
        "data": data,
        "metrics": metrics,
        "intervals": intervals,
        "parity": dict(parity),
        "training": training,
        "sample": {
            "closes": np.asarray(sample_closes).tolist(),
            "forecast": np.asarray(sample_forecast).tolist(),
            "tolerance": SAMPLE_TOLERANCE,
            **({"features": dict(sample_features)} if sample_features else {}),
        },
    }
    if tuning is not None:
        manifest["tuning"] = dict(tuning)
    return manifest
