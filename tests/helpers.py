"""Helpers every test package shares, defined once: the fixture registry's paths, settings for a test app,
and private copies of the registry."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from app.config import Settings
from closecast import registry

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_MODELS = FIXTURES / "models"  # a registry of one version with its `current` pointer
FIXTURE_VERSION = registry.read_current(FIXTURE_MODELS) or "missing"
FIXTURE_BUNDLE = FIXTURE_MODELS / FIXTURE_VERSION
SYNTHETIC_CSV = FIXTURES / "synthetic.csv"  # the closes the fixture model was trained on


def make_settings(model_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: CPU only, a quick pointer watcher, the no-op endpoint on, one train thread."""
    values: dict[str, Any] = {
        "model_dir": model_dir,
        "providers": "cpu",
        "reload_interval_s": 0.05,
        "enable_noop": True,
        "train_threads": 1,
        **overrides,
    }
    return Settings(**values)


def copy_registry(target: Path) -> Path:
    """A private copy of the fixture registry at ``target``, for tests that change it."""
    shutil.copytree(FIXTURE_MODELS, target)
    return target


def detail_msgs(response: Any) -> list[str]:
    """The messages of a 422 answer's ``detail`` list."""
    return [d["msg"] for d in response.json()["detail"]]
