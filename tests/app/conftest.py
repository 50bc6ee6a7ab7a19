"""Fixtures for the serving tests: the committed fixture registry, copies of it, apps and clients."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from closecast import registry

FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
FIXTURE_VERSION = registry.read_current(FIXTURE_MODELS) or "missing"
FIXTURE_BUNDLE = FIXTURE_MODELS / FIXTURE_VERSION


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: CPU only, a quick pointer watcher, the no-op endpoint on."""
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "providers": "cpu",
        "reload_interval_s": 0.05,
        "enable_noop": True,
        **overrides,
    }
    return Settings(**values)


def closes(n: int = 40, level: float = 100.0, seed: int = 1) -> list[float]:
    """A calm random walk (moves well inside the fixture model's training range)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.003, n - 1)
    return (level * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))).tolist()


def detail_msgs(response: Any) -> list[str]:
    return [d["msg"] for d in response.json()["detail"]]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the fixture registry, for tests that change it."""
    target = tmp_path / "models"
    shutil.copytree(FIXTURE_MODELS, target)
    return target


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A started app on the fixture registry (read-only use)."""
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        yield c


@pytest.fixture(scope="module")
def window(client: TestClient) -> int:
    return int(client.get("/models/current").json()["window"])
