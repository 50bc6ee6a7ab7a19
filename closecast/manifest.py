"""The manifest of a new format-2 bundle (every field is documented in ``models/README.md``).

Training fills it from what it measured; ``closecast.bundle.write_bundle`` adds the file hashes. Format-1
manifests are never written any more, only read (``closecast.bundle``).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

import closecast
from closecast.bundle import FORMAT_VERSION, INPUT_NAME, OUTPUT_NAME, SAMPLE_TOLERANCE
from closecast.config import Config
from closecast.representation import REPRESENTATION_V2


def input_section(window: int) -> dict[str, Any]:
    """The tensor contract ``check_contract`` holds the ONNX graph to."""
    return {
        "window": window,
        "name": INPUT_NAME,
        "shape": ["batch", window - 1, 1],
        "dtype": "float32",
        "output_name": OUTPUT_NAME,
        "output_shape": ["batch", 1],
        "representation": REPRESENTATION_V2,
    }


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
    tuning: Mapping[str, Any] | None = None,  # a search's summary (training/tune.py): manifest["tuning"]
) -> dict[str, Any]:
    """The manifest of a new bundle, ``files`` aside (``write_bundle`` adds the hashes)."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"closecast": closecast.__version__, "python": platform.python_version(), **libraries},
        "config": config.to_dict(),
        "input": input_section(config.data.window),
        "data": data,
        "metrics": metrics,
        "intervals": intervals,
        "parity": dict(parity),
        "training": training,
        "sample": {
            "closes": np.asarray(sample_closes).tolist(),
            "forecast": np.asarray(sample_forecast).tolist(),
            "tolerance": SAMPLE_TOLERANCE,
        },
    }
    if tuning is not None:
        manifest["tuning"] = dict(tuning)
    return manifest
