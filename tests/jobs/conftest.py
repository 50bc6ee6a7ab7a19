"""Fixtures of the retraining tests: private copies of the fixture registry, series, running apps.

Each real training subprocess costs ~15 s on 2 cores (torch import + ONNX export), so the scenarios that
need one run it once in a module-scoped fixture and several tests assert on what it recorded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.jobs.helpers import FIXTURE_MODELS


def random_walk(n: int = 300, seed: int = 1) -> np.ndarray:
    """A geometric random walk with no rhythm: the fixture model's learned weekly rhythm is noise here."""
    returns = np.random.default_rng(seed).normal(0.0002, 0.006, n - 1)
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def copy_registry(target: Path) -> Path:
    shutil.copytree(FIXTURE_MODELS, target)
    return target


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the fixture registry (one version, the `current` pointer)."""
    return copy_registry(tmp_path / "models")
