"""Building a test app with retraining wired in, and waiting on jobs (shared with a subprocess test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.helpers import (
    make_settings,
    wait_for,
)

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
TINY = {"window": 11, "hidden_size": 8, "epochs": 3}  # threads come from the settings (1)


def trainer_settings(model_dir: Path, **overrides: Any) -> Settings:
    """``make_settings`` with retraining on: the bearer key is ``KEY``."""
    return make_settings(model_dir, **{"api_key": KEY, **overrides})


def build_app(settings: Settings, python: str | None = None) -> FastAPI:
    """The real app; ``python`` replaces the interpreter that runs ``-m training`` (a wrapper in tests)."""
    app = create_app(settings)
    if python is not None:
        app.state.jobs.python = python
    return app


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/train/{job_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_status(client: TestClient, job_id: str, *statuses: str, timeout: float = 90.0) -> dict[str, Any]:
    """The job once its status is one of ``statuses``."""
    found: dict[str, Any] = wait_for(lambda: (j := job(client, job_id))["status"] in statuses and j, timeout)
    return found


def submit(client: TestClient, closes: Any, **body: Any) -> str:
    payload = {"closes": [float(c) for c in closes], "params": TINY, **body}
    response = client.post("/train", json=payload, headers=AUTH)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    assert response.headers["location"] == f"/train/{job_id}"
    return job_id
