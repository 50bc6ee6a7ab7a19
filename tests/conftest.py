"""Shared for every test: a clean environment, so a developer's own ``CLOSECAST_*`` variables (the README's
retraining walk-through exports ``CLOSECAST_API_KEY``) cannot change what the tests see; a throwaway
PostgreSQL cluster (one per session, a fresh database per module) for the scale-out tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import get_settings
from tests.helpers import copy_registry, start_cluster_or_skip  # CI: a skip of PostgreSQL is a failure


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A PostgreSQL server of its own on a loopback port (``tests/postgres.py``), or a skip saying why."""
    cluster = start_cluster_or_skip()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def pg_url(pg_cluster: Any) -> str:
    """A fresh, empty database for this test module."""
    url: str = pg_cluster.create_database()
    return url


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
