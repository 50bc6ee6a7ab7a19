"""A real `python -m app` whose job store is deleted mid-job and then locked by another process: the
pointer watcher keeps following promotions, /readyz stays 200 and lists the broken store, and all recovers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.storage.sqlite_jobs import DB_FILE
from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, ROOT, free_port, server_env
from tests.jobs.helpers import AUTH, KEY, TINY
from tests.jobs.test_store_faults import locked
from tests.synthetic import calm_walk, random_walk

NEW = "20991231T000000Z-0000beef"
RELOAD_S = 0.1


def _until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return value


def _served(url: str) -> str:
    version: str = httpx.post(f"{url}/forecast", json={"closes": calm_walk()}, timeout=5).json()[
        "model_version"
    ]
    return version


def _start(model_dir: Path, port: int) -> subprocess.Popen[str]:
    env = server_env(
        providers="cpu",
        model_dir=str(model_dir),
        port=str(port),
        api_key=KEY,
        reload_interval_s=str(RELOAD_S),
        job_heartbeat_s="0.2",
        job_lease_s="2",
        job_store_timeout_s="0.5",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )


def test_watcher_follows_promotions_while_the_job_store_is_deleted_and_locked(model_dir: Path) -> None:
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, model_dir / DEFAULT / NEW)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start(model_dir, port)
    try:
        _until(lambda: _ok(url, server), 60, "ready")
        params = {**TINY, "epochs": 100_000, "patience": 100_000}  # runs until cancelled
        body = {"closes": random_walk(300, seed=8).tolist(), "params": params}
        job_id = httpx.post(f"{url}/train", json=body, headers=AUTH, timeout=10).json()["job_id"]
        _until(lambda: _job(url, job_id).get("status") == "running", 30, "job running")

        for suffix in ("", "-wal", "-shm"):  # the store vanishes mid-job
            Path(f"{model_dir / DB_FILE}{suffix}").unlink(missing_ok=True)
        registry.set_current(model_dir / DEFAULT, NEW)
        _until(lambda: _served(url) == NEW, 20 * RELOAD_S, "swap after the store was deleted")
        _until(
            lambda: _job(url, job_id).get("status") == "running", 5, "running job put back in the new store"
        )

        with locked(model_dir / DB_FILE):
            started = time.monotonic()
            refused = httpx.post(f"{url}/train", json=body, headers=AUTH, timeout=10)
            assert refused.status_code == 503 and time.monotonic() - started < 3.0
            assert "locked by another process" in refused.json()["detail"]
            degraded = _until(lambda: _ready(url)["degraded"], 10, "degraded listed")
            assert degraded[0].startswith("jobs: the job store jobs.sqlite is locked")
            registry.set_current(model_dir / DEFAULT, FIXTURE_VERSION)  # a rollback while the store is locked
            _until(lambda: _served(url) == FIXTURE_VERSION, 20 * RELOAD_S, "swap while the store is locked")
        _until(lambda: _ready(url)["degraded"] == [], 10, "recovered after the lock was released")
        assert _job(url, job_id)["status"] == "running"  # it kept its lease through the lock
        cancelled = httpx.delete(f"{url}/train/{job_id}", headers=AUTH, timeout=15).json()
        assert cancelled["status"] == "cancelled"
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'closecast_background_up{task="pointer"} 1.0' in metrics
        assert 'closecast_background_up{task="jobs"} 1.0' in metrics
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    assert "the job store jobs.sqlite was deleted or replaced; opening a new one" in stderr
    assert "the job store lost this running job; it was put back" in stderr


def _ok(url: str, server: subprocess.Popen[str]) -> bool:
    assert server.poll() is None, server.communicate()[1]
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _ready(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/readyz", timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _job(url: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/train/{job_id}", headers=AUTH, timeout=5)
    return response.json() if response.status_code == 200 else {}
