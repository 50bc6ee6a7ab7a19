"""Fixtures for the serving tests: a started app on the committed fixture registry (format 2, closes only),
its window, and an app on the format-1 registry for what only format 1 does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import FIXTURE_MODELS, FORMAT1_MODELS, make_settings


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A started app on the fixture registry (read-only use)."""
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        yield c


@pytest.fixture(scope="module")
def window(client: TestClient) -> int:
    return int(client.get("/models/current").json()["window"])


@pytest.fixture(scope="module")
def format1_client() -> Iterator[TestClient]:
    """A started app on the format-1 registry (read-only use): its range warnings exist in no other format."""
    with TestClient(create_app(make_settings(FORMAT1_MODELS))) as c:
        yield c
