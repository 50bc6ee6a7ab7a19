"""The ``JobStore`` contract, run against both backends: SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.storage.errors import QueueFull, StoreUnavailable
from app.storage.job_store import Job, JobStore, Owner
from app.storage.sqlite_jobs import SQLiteJobStore

SPEC: dict[str, Any] = {"csv": "x.csv", "column": "Close", "date_column": None, "rows": 300, "params": {}}
PROGRESS = {"epoch": 0, "epochs": 3, "train_loss": None, "val_loss": None}

StoreFactory = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Builds stores on one backend's shared jobs (each call: another process's view of the same table)."""
    if request.param == "sqlite":
        yield lambda: SQLiteJobStore(tmp_path / "jobs.sqlite")
        return
    url = request.getfixturevalue("pg_url")  # first: a skip (or, in CI, a failure) without the `pg` extra
    from app.storage.pg import Database
    from app.storage.pg_jobs import PostgresJobStore

    dbs: list[Database] = []

    def build() -> JobStore:
        db = Database(url, pool_size=4)
        db.open()
        dbs.append(db)
        return PostgresJobStore(db)

    with build().db.connection() as conn:  # type: ignore[attr-defined]
        conn.execute("TRUNCATE jobs")
    yield build
    for db in dbs:
        db.close()


@pytest.fixture
def store(new_store: StoreFactory) -> JobStore:
    s = new_store()
    s.open()
    return s


def add(store: JobStore, job_id: str, limit: int = 10, model: str = "default") -> Job:
    return store.enqueue(job_id, "name", "auto", SPEC, PROGRESS, limit, model=model)


def test_jobs_are_claimed_oldest_first_and_one_per_model(store: JobStore) -> None:
    for job_id in ("a", "b"):
        add(store, job_id)
    add(store, "other", model="aapl")
    owner = Owner(1, "h", None, "t")
    first = store.claim(owner)
    assert first is not None and first.id == "a" and first.status == "running" and first.owner == owner
    assert first.heartbeat_at is not None and first.spec == SPEC
    assert store.claim(Owner(2, "h", None, "u")) is None  # a job of the model is running
    other = store.claim(Owner(3, "h", None, "v"), model="aapl")  # another model's job may run meanwhile
    assert other is not None and other.id == "other"
    assert store.finish("a", "succeeded", result={"version": "v"})
    second = store.claim(Owner(2, "h", None, "u"))
    assert second is not None and second.id == "b"
    assert [j.id for j in store.recent()] == ["other", "b", "a"]
    assert store.get("a") is not None and store.get("a").result == {"version": "v"}  # type: ignore[union-attr]


def test_queue_is_bounded(store: JobStore) -> None:
    add(store, "a", limit=2)
    add(store, "b", limit=2)
    with pytest.raises(QueueFull):
        add(store, "c", limit=2)
    assert store.get("c") is None and store.count("queued") == 2


def test_a_tune_jobs_queued_shards_take_no_place_in_the_queue(store: JobStore) -> None:
    add(store, "parent", limit=2)
    for n in (1, 2, 3):  # a 4-worker job's shards, waiting for free workers (they skip the bound)
        store.enqueue(f"shard{n}", "name", "never", {**SPEC, "shard_of": "parent"}, PROGRESS, 10**9)
    add(store, "b", limit=2)  # the second place is still free for another user
    with pytest.raises(QueueFull):
        add(store, "c", limit=2)
    assert store.count("queued") == 2 and len(store.with_status("queued")) == 5


def test_a_job_ends_once(store: JobStore) -> None:
    add(store, "a")
    assert store.claim(Owner(1, "h", None, "t")) is not None
    assert store.finish("a", "failed", error="boom")
    assert not store.finish("a", "succeeded")
    job = store.get("a")
    assert job is not None and job.status == "failed" and job.error == "boom" and job.finished_at


def test_cancel_ends_a_queued_job_and_flags_a_running_one(store: JobStore) -> None:
    add(store, "a")
    add(store, "b")
    assert store.claim(Owner(1, "h", None, "t")) is not None  # a runs
    cancelled = store.request_cancel("b")
    assert cancelled is not None and cancelled.status == "cancelled"
    flagged = store.request_cancel("a")
    assert flagged is not None and flagged.status == "running" and flagged.cancel_requested
    assert store.cancel_requested("a")


def test_progress_and_child_are_recorded(store: JobStore) -> None:
    add(store, "a")
    store.claim(Owner(1, "h", None, "t"))
    store.set_progress("a", {"epoch": 2, "epochs": 3, "train_loss": 0.5, "val_loss": 0.4})
    store.set_child("a", 4242)
    job = store.get("a")
    assert job is not None and job.progress == {"epoch": 2, "epochs": 3, "train_loss": 0.5, "val_loss": 0.4}
    assert job.child_pid == 4242


def test_a_lease_is_held_until_a_stale_job_is_recovered(store: JobStore) -> None:
    add(store, "a")
    owner = Owner(1, "h", None, "t")
    claimed = store.claim(owner)
    assert claimed is not None
    assert store.heartbeat("a", owner) == "held"
    assert store.recover_stale("default", lambda job: None) == []
    recovered = store.recover_stale("default", lambda job: "worker lost: test")
    assert [(j.id, why) for j, why in recovered] == [("a", "worker lost: test")]
    assert store.heartbeat("a", owner) == "lost"  # the owner learns it lost the job
    assert store.heartbeat("nope", owner) == "missing"
    ended = store.get("a")
    assert ended is not None and ended.status == "failed" and ended.error == "worker lost: test"
    assert store.claim(Owner(2, "h", None, "u")) is None  # failed, not requeued


def test_a_lost_job_is_restored_once(store: JobStore) -> None:
    add(store, "a")
    job = store.claim(Owner(1, "h", None, "t"))
    assert job is not None
    assert not store.restore(job)  # still there: nothing to put back


def test_concurrent_claims_take_each_job_once(new_store: StoreFactory) -> None:
    """Eight workers (their own store objects, connections) race for twenty jobs of twenty models."""
    first = new_store()
    first.open()
    for n in range(20):
        add(first, f"j{n}", limit=100, model=f"m{n}")
    stores = [new_store() for _ in range(8)]
    taken: list[str] = []
    lock = threading.Lock()

    def worker(store: JobStore, n: int) -> None:
        for model in (f"m{i}" for i in range(20)):
            job = store.claim(Owner(n, "h", None, f"t{n}"), model=model)
            if job is not None:
                with lock:
                    taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(f"j{n}" for n in range(20))


def test_a_store_that_cannot_be_reached_answers_unavailable(pg_cluster: Any) -> None:
    """PostgreSQL down (a port nobody listens on): a quick StoreUnavailable that says so, no URL."""
    from app.storage.pg import Database
    from app.storage.pg_jobs import PostgresJobStore
    from tests.helpers import free_port

    db = Database(f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x", timeout_s=0.5)
    db.pool.open(wait=False)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            PostgresJobStore(db).count("queued")
    finally:
        db.close()
    assert "cannot be reached" in caught.value.message and "secret" not in caught.value.message
