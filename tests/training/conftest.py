"""Fixtures for the training tests: tiny models trained in seconds on generated series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from closecast.config import Config
from closecast.series import load_csv
from tests.helpers import require_extra
from tests.synthetic import make_closes, write_csv

require_extra("torch", "train")  # every test here trains: without the `train` extra the directory is skipped
from training.pipeline import run_training  # noqa: E402

TINY = {"window": 11, "hidden_size": 8, "epochs": 3, "seed": 7}


def train_tiny(csv: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    return run_training(load_csv(csv), Config.from_overrides({**TINY, **overrides}), out, quiet=True)


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "prices.csv", make_closes(300, level=100.0))


@pytest.fixture(scope="session")
def tiny_bundle(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny bundle shared by the read-only tests (training + export take a few seconds)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    train_tiny(synthetic_csv, out, epochs=5, lr=0.01)
    return out
