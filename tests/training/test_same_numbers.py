"""Windows built per batch (flat memory) must train the very model the materialised windows trained.

``tests/fixtures/pre_flat_memory.json`` holds what two tiny runs produced *before* windows became views
(commit 0c1a47f): run this file as a script on a checkout to rewrite it (``python -m
tests.training.test_same_numbers``). Both runs fit in one evaluation batch and one scaler chunk, where the
batched code computes exactly what the old code did, so the figures must match to the last bit. The
interval tables and coverages in it were refreshed when tables became symmetric (``|e|``); nothing else did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from closecast.config import Config
from closecast.series import Series
from tests.synthetic import make_closes
from training.pipeline import run_training

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pre_flat_memory.json"


def _series(closes: np.ndarray, name: str) -> Series:
    return Series(closes, None, name, "Close", None, closes.size, 0)


def _scenarios() -> dict[str, tuple[list[Series], dict[str, Any], int]]:
    flat = make_closes(420, seed=2)
    flat[200:230] = flat[200]  # a flat stretch: windows left out of training and calibration
    return {
        "one": (
            [_series(make_closes(300, level=100.0), "one")],
            {"window": 11, "hidden_size": 8, "epochs": 3, "seed": 7},
            0,
        ),
        "many": (
            [_series(make_closes(400, seed=1), "a"), _series(flat, "b")],
            {"window": 16, "hidden_size": 6, "epochs": 2, "seed": 3, "batch_size": 32},
            1,
        ),
    }


def _figures(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    return {
        "metrics": manifest["metrics"],
        "intervals": manifest["intervals"],
        "history": manifest["training"]["history"],
        "best_epoch": manifest["training"]["best_epoch"],
        "windows": manifest["training"]["windows"],
        "sample": manifest["sample"],
        "parity_n": manifest["parity"]["n_windows"],
        "scaler": json.loads((out / "scaler.json").read_text()),
    }


def run_scenario(name: str, out: Path) -> dict[str, Any]:
    series, overrides, synthetic = _scenarios()[name]
    manifest = run_training(series, Config.from_overrides(overrides), out, quiet=True, synthetic=synthetic)
    return _figures(manifest, out)


@pytest.mark.parametrize("name", ["one", "many"])
def test_batched_windows_train_the_same_model_as_before(name: str, tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())[name]
    got = json.loads(json.dumps(run_scenario(name, tmp_path / name)))
    assert got["history"] == expected["history"]  # the float32 training itself: bit for bit
    assert got == expected


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        figures = {name: run_scenario(name, Path(tmp) / name) for name in _scenarios()}
    FIXTURE.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
