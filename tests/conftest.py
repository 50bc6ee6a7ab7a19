"""Shared for every test: a clean environment, so a developer's own ``CLOSECAST_*`` variables (the README's
retraining walk-through exports ``CLOSECAST_API_KEY``) cannot change what the tests see."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from app.config import get_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("CLOSECAST_", "UVICORN_")):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
