"""Shared for every test: a clean environment, so a developer's own ``CLOSECAST_*`` variables (the README's
retraining walk-through exports ``CLOSECAST_API_KEY``) cannot change what the tests see."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import get_settings
from tests.helpers import copy_registry


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("CLOSECAST_", "UVICORN_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the fixture registry (one version, the `current` pointer) to change."""
    return copy_registry(tmp_path / "models")
