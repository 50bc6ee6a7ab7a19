"""The SQLite job store: FIFO queue, bounded, one running job across processes, ends recorded once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.storage.errors import QueueFull
from app.storage.job_store import Job, Owner
from app.storage.sqlite_jobs import SQLiteJobStore

SPEC: dict[str, Any] = {"csv": "x.csv", "column": "Close", "date_column": None, "rows": 300, "params": {}}
PROGRESS = {"epoch": 0, "epochs": 3, "train_loss": None, "val_loss": None}


@pytest.fixture
def store(tmp_path: Path) -> SQLiteJobStore:
    s = SQLiteJobStore(tmp_path / "jobs.sqlite")
    s.open()
    return s


def add(store: SQLiteJobStore, job_id: str, limit: int = 10) -> Job:
    return store.enqueue(job_id, "name", "auto", SPEC, PROGRESS, limit)


def test_store_is_in_wal_mode(store: SQLiteJobStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_jobs_are_claimed_oldest_first_and_one_at_a_time(store: SQLiteJobStore) -> None:
    for job_id in ("a", "b"):
        add(store, job_id)
    owner = Owner(1, "h", None, "t")
    first = store.claim(owner)
    assert first is not None and first.id == "a" and first.status == "running" and first.owner == owner
    assert first.heartbeat_at is not None
    assert store.claim(Owner(2, "h", None, "u")) is None  # a job is running
    assert store.finish("a", "succeeded", result={"version": "v"})
    second = store.claim(Owner(2, "h", None, "u"))
    assert second is not None and second.id == "b"


def test_queue_is_bounded(store: SQLiteJobStore) -> None:
    add(store, "a", limit=2)
    add(store, "b", limit=2)
    with pytest.raises(QueueFull):
        add(store, "c", limit=2)
    assert store.get("c") is None


def test_a_job_ends_once(store: SQLiteJobStore) -> None:
    add(store, "a")
    assert store.finish("a", "failed", error="boom")
    assert not store.finish("a", "succeeded")
    job = store.get("a")
    assert job is not None and job.status == "failed" and job.error == "boom" and job.finished_at


def test_cancel_ends_a_queued_job_and_flags_a_running_one(store: SQLiteJobStore) -> None:
    add(store, "a")
    add(store, "b")
    store.claim(Owner(1, "h", None, "t"))
    running = store.request_cancel("a")
    assert running is not None and running.status == "running" and store.cancel_requested("a")
    queued = store.request_cancel("b")
    assert queued is not None and queued.status == "cancelled" and queued.error == "cancelled by request"


def test_a_second_running_job_is_impossible(store: SQLiteJobStore) -> None:
    add(store, "a")
    add(store, "b")
    store.claim(Owner(1, "h", None, "t"))
    with sqlite3.connect(store.path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = 'b'")


CLAIMER = """
import json, os, sys, time
from pathlib import Path
from app.storage.sqlite_jobs import SQLiteJobStore
from app.storage.job_store import Owner
store, go = SQLiteJobStore(Path(sys.argv[1])), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
job = store.claim(Owner(os.getpid(), "host", None, "token"))
print(json.dumps(job.id if job else None))
"""


def test_concurrent_workers_claim_one_job_between_them(store: SQLiteJobStore, tmp_path: Path) -> None:
    for job_id in ("a", "b", "c"):
        add(store, job_id)
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, str(store.path), str(go)], stdout=subprocess.PIPE)
        for _ in range(6)
    ]
    time.sleep(0.5)  # let them all start and wait on the flag
    go.touch()
    claimed = [json.loads(w.communicate(timeout=30)[0]) for w in workers]
    assert claimed.count("a") == 1 and claimed.count(None) == 5  # the oldest job, claimed once
    running = store.with_status("running")
    assert [j.id for j in running] == ["a"]
    assert running[0].owner is not None and running[0].owner.pid in {w.pid for w in workers}
