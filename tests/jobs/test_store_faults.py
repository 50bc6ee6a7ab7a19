"""A job store that is locked, deleted or left with a stale running row: quick 503s with the real cause,
``/readyz`` stays 200 and lists the problem, and a job whose worker is gone is recovered without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from app.jobs.process import HOST_AND_BOOT, process_start
from app.storage.errors import StoreUnavailable
from app.storage.job_store import Owner
from app.storage.sqlite_jobs import DB_FILE, SQLiteJobStore
from tests.jobs.helpers import AUTH, TINY, build_app, job, submit, trainer_settings, wait_for, wait_status
from tests.jobs.test_restart import FORGED_SPEC
from tests.synthetic import random_walk

QUICK_LEASE = {"job_heartbeat_s": 0.1, "job_lease_s": 1.0}

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def locked(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds SQLite's exclusive lock on ``db`` (as `sqlite3 db 'BEGIN EXCLUSIVE;'` would)."""
    with subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            yield proc
        finally:
            proc.kill()


def _post(client: TestClient) -> tuple[int, str, float]:
    began = time.monotonic()
    payload = {"closes": random_walk(300, seed=3).tolist(), "params": TINY}
    response = client.post("/train", json=payload, headers=AUTH)
    return response.status_code, response.text, time.monotonic() - began


def test_post_train_under_a_held_lock_is_a_quick_503_that_says_locked(model_dir: Path) -> None:
    store = SQLiteJobStore(model_dir / DB_FILE)
    store.open()
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        with locked(store.path):
            status, text, seconds = _post(client)
            assert status == 503, text
            assert seconds < 3.0  # the default CLOSECAST_JOB_STORE_TIMEOUT_S is 2 s; it was a 30 s hang
            detail = json.loads(text)["detail"]
            assert detail.startswith("the job store jobs.sqlite is locked by another process; retry")
            assert "writable" not in detail and str(model_dir) not in detail
            wait_for(lambda: client.get("/readyz").json()["degraded"], timeout=10)
            ready = client.get("/readyz")
            assert ready.status_code == 200  # a locked store degrades; it does not take the replica out
            assert ready.json()["degraded"][0].startswith("jobs: the job store jobs.sqlite is locked")
        wait_for(lambda: client.get("/readyz").json()["degraded"] == [], timeout=10)  # lock released
        assert _post(client)[0] == 202


def test_store_errors_name_their_cause_without_a_path(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite", timeout_s=0.1)
    store.open()
    with locked(store.path):
        try:
            store.enqueue("a", "n", "auto", FORGED_SPEC, {}, limit=4)
        except StoreUnavailable as exc:
            assert exc.kind == "locked" and str(tmp_path) not in exc.message
        else:
            raise AssertionError("a locked store accepted a write")
    store.path.unlink()
    store.path.mkdir()  # something that is no database at all
    try:
        store.get("a")
    except StoreUnavailable as exc:
        assert exc.kind in ("missing", "damaged") and str(tmp_path) not in exc.message
    else:
        raise AssertionError("a directory was read as the job store")


def test_a_store_deleted_under_the_service_is_created_again(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        first = submit(client, random_walk(300, seed=4))
        wait_status(client, first, "running")
        assert client.delete(f"/train/{first}", headers=AUTH).json()["status"] == "cancelled"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{model_dir / DB_FILE}{suffix}").unlink(missing_ok=True)
        assert client.get(f"/train/{first}", headers=AUTH).status_code == 404  # its history went with it
        second = submit(client, random_walk(300, seed=5))
        wait_status(client, second, "running")  # the new store takes jobs and the runner claims them
        assert client.delete(f"/train/{second}", headers=AUTH).json()["status"] == "cancelled"
        assert client.get("/readyz").json()["degraded"] == []


def test_a_stale_running_row_of_a_live_process_is_recovered_by_its_lease(model_dir: Path) -> None:
    """The owner process lives on (its runner died): only the lease can tell. Failed; the queue runs."""
    live = subprocess.Popen(["sleep", "60"])
    try:
        store = SQLiteJobStore(model_dir / DB_FILE)
        store.open()
        store.enqueue("stale", "elsewhere", "auto", FORGED_SPEC, {"epoch": 0, "epochs": 3}, limit=4)
        assert store.claim(Owner(live.pid, HOST_AND_BOOT, process_start(live.pid), "its-dead-runner"))
        with TestClient(build_app(trainer_settings(model_dir, **QUICK_LEASE))) as client:
            assert job(client, "stale")["status"] == "running"  # its lease is fresh
            queued = submit(client, random_walk(300, seed=6))
            stale = wait_status(client, "stale", "failed", timeout=10)
            assert stale["error"].startswith(
                f"worker lost: worker process {live.pid} did not renew its lease"
            )
            assert stale["error"].endswith("(CLOSECAST_JOB_LEASE_S is 1); submit it again")
            wait_status(client, queued, "running")  # the queue runs again
            assert client.delete(f"/train/{queued}", headers=AUTH).json()["status"] == "cancelled"
        assert os.waitpid(live.pid, os.WNOHANG) == (0, 0)  # the owner process itself was left alone
    finally:
        live.kill()
        live.wait()


def test_a_running_job_keeps_its_lease_across_heartbeats(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir, **QUICK_LEASE))) as client:
        job_id = submit(client, random_walk(300, seed=7), params={**TINY, "epochs": 40, "patience": 40})
        wait_for(lambda: job(client, job_id)["status"] == "running", timeout=30)
        time.sleep(2.5)  # more than two lease periods: its own runner renews it
        assert job(client, job_id)["status"] == "running"
        assert client.delete(f"/train/{job_id}", headers=AUTH).json()["status"] == "cancelled"
