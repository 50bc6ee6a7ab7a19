"""Restarts and several workers: no job is silently lost, and a live worker's job is left alone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.jobs.process import HOST_AND_BOOT, process_start
from app.storage.job_store import Owner
from app.storage.sqlite_jobs import DB_FILE, SQLiteJobStore
from closecast import registry
from tests.helpers import DEFAULT
from tests.jobs.helpers import AUTH, build_app, job, submit, trainer_settings, wait_for, wait_status
from tests.jobs.test_failures import training_pids
from tests.synthetic import random_walk

ROOT = Path(__file__).resolve().parents[2]
LEASE_S: float = Settings.model_fields["job_lease_s"].default  # the lease the test apps run with
FORGED_SPEC: dict[str, Any] = {
    "csv": "x.csv",
    "column": "Close",
    "date_column": None,
    "rows": 300,
    "params": {},
}

# A first app instance in its own process: it queues job A (which starts training) and job B behind it,
# says so, and waits to be killed.
FIRST_INSTANCE = """
import json, sys, time
from pathlib import Path
import pytest
from fastapi.testclient import TestClient
from tests.synthetic import random_walk
from tests.jobs.helpers import build_app, job, submit, trainer_settings, wait_for

with TestClient(build_app(trainer_settings(Path(sys.argv[1])))) as client:
    a = submit(client, random_walk(300, seed=5))
    wait_for(lambda: job(client, a)["status"] == "running")
    b = submit(client, random_walk(300, seed=6), name="after-restart")
    print(json.dumps({"a": a, "b": b}), flush=True)
    time.sleep(600)
"""


def test_after_a_crash_the_running_job_fails_its_training_is_killed_and_the_queue_runs(
    model_dir: Path,
) -> None:
    command = [sys.executable, "-c", FIRST_INSTANCE, str(model_dir)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as first:
        try:
            assert first.stdout is not None
            ids = json.loads(first.stdout.readline())
            orphans = wait_for(lambda: training_pids(ids["a"]), timeout=30)
            # A stopped orphan cannot notice its parent's death (tests/jobs/test_orphans.py shows that a
            # running one ends itself): the restarted service's reaper is the second line, tested here.
            for pid in orphans:
                os.kill(pid, signal.SIGSTOP)
        finally:
            first.kill()  # SIGKILL: no shutdown code runs; the training process lives on in its own session
    time.sleep(1.0)
    assert training_pids(ids["a"]) == orphans
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        a = job(client, ids["a"])
        assert a["status"] == "failed"
        assert a["error"] == (
            f"interrupted by restart: the worker process {first.pid} that ran this job is gone; "
            "submit it again"
        )
        wait_for(lambda: training_pids(ids["a"]) == [], timeout=30)  # the orphan was killed
        b = wait_status(client, ids["b"], "succeeded", "failed", "cancelled")
        assert b["status"] == "succeeded", b
        assert b["result"]["version"] in registry.list_versions(model_dir / DEFAULT)
        assert not (model_dir / ".jobs" / ids["a"]).exists()


def test_a_running_job_of_a_live_worker_blocks_the_queue_until_that_worker_dies(model_dir: Path) -> None:
    other_worker = subprocess.Popen(["sleep", "60"])
    store = SQLiteJobStore(model_dir / DB_FILE)
    store.open()
    store.enqueue("busy", "elsewhere", "auto", FORGED_SPEC, {"epoch": 0, "epochs": 3}, limit=4)
    its_owner = Owner(other_worker.pid, HOST_AND_BOOT, process_start(other_worker.pid), "its-runner")
    assert store.claim(its_owner) is not None
    try:
        with TestClient(build_app(trainer_settings(model_dir))) as client:
            queued = submit(client, random_walk(300, seed=7))
            time.sleep(2.5)  # the runner looks at the queue (and reaps dead owners) every second
            assert job(client, "busy")["status"] == "running"  # its worker is alive: not touched
            assert job(client, queued)["status"] == "queued"  # one job at a time across workers
            os.kill(other_worker.pid, signal.SIGKILL)
            other_worker.wait()
            busy = wait_status(client, "busy", "failed", timeout=30)
            assert busy["error"].startswith(f"interrupted by restart: the worker process {other_worker.pid}")
            wait_status(client, queued, "running", timeout=30)
            assert client.delete(f"/train/{queued}", headers=AUTH).json()["status"] == "cancelled"
    finally:
        other_worker.kill()
        other_worker.wait()


def _forge_running(model_dir: Path, owner: Owner, heartbeat_age_s: float = 0.0) -> None:
    store = SQLiteJobStore(model_dir / DB_FILE)
    store.open()
    store.enqueue("forged", "elsewhere", "auto", FORGED_SPEC, {"epoch": 0, "epochs": 3}, limit=4)
    assert store.claim(owner) is not None
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - ?", (heartbeat_age_s,))


@pytest.mark.parametrize(
    ("owner", "heartbeat_age_s", "status"),
    [
        # pid reused
        (Owner(os.getpid(), HOST_AND_BOOT, process_start(os.getpid()), "a-dead-runner"), 0.0, "failed"),
        # live pid, other start time
        (Owner(1, HOST_AND_BOOT, "12345", "init-was-never-a-worker"), 0.0, "failed"),
        (Owner(1, "another-container/boot", None, "t"), LEASE_S + 1, "failed"),  # silent too long
        (Owner(1, "another-container/boot", None, "t"), 1.0, "running"),  # recent heartbeat: alive
    ],
    ids=["same-pid-other-runner", "recycled-pid", "other-host-silent", "other-host-beating"],
)
def test_owners_are_told_dead_or_alive_without_trusting_a_bare_pid(
    model_dir: Path, owner: Owner, heartbeat_age_s: float, status: str
) -> None:
    _forge_running(model_dir, owner, heartbeat_age_s)
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        assert job(client, "forged")["status"] == status
