"""The ``PointerStore`` contract, run against the pointer files and PostgreSQL; seeding and notifications."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from closecast import pointer_store, registry
from closecast.pointer_store import FilePointers, PointerStore
from tests.helpers import FIXTURE_VERSION, copy_registry

SECOND = "20261124T000000Z-second00"


def _registry(tmp_path: Path) -> Path:
    """The fixture registry plus a second version (a copy of the bundle under another name)."""
    model_dir = copy_registry(tmp_path / "models")
    shutil.copytree(model_dir / "default" / FIXTURE_VERSION, model_dir / "default" / SECOND)
    return model_dir


@pytest.fixture(params=["files", "postgresql"])
def pointers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PointerStore]:
    model_dir = _registry(tmp_path)
    files = FilePointers(model_dir)
    if request.param == "files":
        yield files
        return
    url = request.getfixturevalue("pg_url")  # first: a skip (or, in CI, a failure) without the `pg` extra
    from app.storage.pg import Database
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    db = Database(url)
    db.open()
    with db.connection() as conn:
        conn.execute("TRUNCATE pointers, promotions")
    store = PostgresPointers(db, files)
    seed_pointers(store, ["default"])
    yield store
    store.close()
    db.close()


def test_promotion_moves_the_pointer_and_records_history(pointers: PointerStore) -> None:
    assert pointers.current("default") == FIXTURE_VERSION
    pointers.promote("default", SECOND, "test: better")
    assert pointers.current("default") == SECOND
    assert pointers.candidates("default") == [SECOND, FIXTURE_VERSION]
    last = pointers.history("default")[-1]
    assert (last.version, last.previous, last.reason) == (SECOND, FIXTURE_VERSION, "test: better")


def test_an_unknown_version_is_refused_and_changes_nothing(pointers: PointerStore) -> None:
    before = pointers.history("default")
    with pytest.raises(ValueError, match="not a bundle"):
        pointers.promote("default", "20990101T000000Z-nothere0", "")
    assert pointers.history("default") == before and pointers.current("default") == FIXTURE_VERSION


def test_a_deleted_bundle_falls_back_to_the_last_promoted_one(pointers: PointerStore, tmp_path: Path) -> None:
    pointers.promote("default", SECOND)
    shutil.rmtree(tmp_path / "models" / "default" / SECOND)
    assert pointers.current("default") == FIXTURE_VERSION


def test_the_database_is_seeded_once_from_the_files(pg_url: str, tmp_path: Path) -> None:
    from app.storage.pg import Database
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    model_dir = _registry(tmp_path)
    db = Database(pg_url)
    db.open()
    with db.connection() as conn:
        conn.execute("TRUNCATE pointers, promotions")
    store = PostgresPointers(db, FilePointers(model_dir))
    try:
        assert seed_pointers(store, ["default"]) == ["default"]
        assert store.current("default") == registry.read_current(model_dir / "default") == FIXTURE_VERSION
        registry.set_current(
            model_dir / "default", SECOND
        )  # the files change later: the database no longer reads them
        assert seed_pointers(store, ["default"]) == []
        assert store.current("default") == FIXTURE_VERSION
    finally:
        db.close()


def test_a_promotion_is_notified_to_listeners(pg_url: str, tmp_path: Path) -> None:
    from app.storage.pg import Database
    from app.storage.pg_pointers import PostgresPointers
    from app.storage.pg_seed import seed_pointers

    db = Database(pg_url)
    db.open()
    files = FilePointers(_registry(tmp_path))
    writer, listener = PostgresPointers(db, files), PostgresPointers(db, files)
    seed_pointers(writer, ["default"])
    try:
        assert listener.wait_for_promotion(0.05) == []  # listening from now on
        woke: list[Any] = []
        thread = threading.Thread(target=lambda: woke.append((listener.wait_for_promotion(10), time.time())))
        thread.start()
        time.sleep(0.2)
        sent = time.time()
        writer.promote("default", SECOND)
        thread.join(10)
        assert woke and woke[0][0] == ["default"] and woke[0][1] - sent < 1.0
    finally:
        listener.close()
        db.close()


def test_a_conditional_promotion_compares_where_it_writes(pointers: PointerStore) -> None:
    """``expected`` is checked inside the write (the PostgreSQL transaction, the file lock's holder): a
    promotion judged against a version that is no longer current changes nothing, on either backend."""
    pointers.promote("default", SECOND, "test: someone else promoted first")
    before = pointers.history("default")
    with pytest.raises(pointer_store.PointerMoved, match=f"names {SECOND} now"):
        pointers.promote("default", FIXTURE_VERSION, "test: judged against the old one", (FIXTURE_VERSION,))
    assert pointers.current("default") == SECOND
    assert pointers.history("default") == before
    pointers.promote("default", FIXTURE_VERSION, "test: judged against the current one", (SECOND,))
    assert pointers.current("default") == FIXTURE_VERSION


def test_a_version_the_store_promoted_is_never_deleted_or_pruned(
    pointers: PointerStore, tmp_path: Path
) -> None:
    """Deletion and retention ask the pointer store what was promoted: on PostgreSQL the promotion history
    lives in the database only, and the files alone would let the version just rolled back from go."""
    from closecast import retention
    from closecast.errors import RegistryConflict

    model_dir = tmp_path / "models" / "default"
    pointers.promote("default", SECOND, "test: promoted")
    pointers.promote("default", FIXTURE_VERSION, "test: rolled back")  # SECOND is history now
    with pytest.raises(RegistryConflict, match="promotion history"):
        retention.delete_version(model_dir, "default", SECOND, pointers)
    pointers.promote("default", SECOND, "test: current again")
    with pytest.raises(RegistryConflict, match="current version"):
        retention.delete_version(model_dir, "default", SECOND, pointers)
    assert retention.prune_versions(model_dir, 0, pointers) == []
    assert registry.is_bundle(model_dir, SECOND)


def test_promotions_at_once_each_return_the_version_they_replaced(pointers: PointerStore) -> None:
    """``previous`` is read where the pointer is written: of eight promotions racing from eight threads,
    each returns the version the history says it replaced, and every one chains onto the one before."""
    answers: list[tuple[str, str | None]] = []
    go = threading.Barrier(8)

    def promote(version: str) -> None:
        go.wait()
        # the files need the registry lock (make_current holds it); PostgreSQL serialises in its transaction
        lock = pointers.change_lock() if isinstance(pointers, FilePointers) else nullcontext()
        with lock:
            answers.append((version, pointers.promote("default", version, "test: race")))

    threads = [threading.Thread(target=promote, args=(v,)) for v in [SECOND, FIXTURE_VERSION] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    history = pointers.history("default")[-8:]
    assert sorted(answers, key=str) == sorted(((p.version, p.previous) for p in history), key=str)
    assert all(b.previous == a.version for a, b in itertools.pairwise(history))


def test_one_read_of_the_state_agrees_with_the_separate_reads(pointers: PointerStore, tmp_path: Path) -> None:
    """``state`` (what a loaded model's poll reads, one query on PostgreSQL) gives the stamp, the servable
    pointer and the candidates the separate calls give, and moves when the pointer is written."""
    before = pointers.state("default")
    assert before == registry.PointerState(
        pointers.stamp("default"), pointers.read_pointer("default").version, pointers.candidates("default")
    )
    assert before.pointed == FIXTURE_VERSION and before.stamp is not None
    pointers.promote("default", SECOND, "test: better")
    after = pointers.state("default")
    assert after.stamp != before.stamp
    assert (after.pointed, after.candidates) == (SECOND, [SECOND, FIXTURE_VERSION])
    shutil.rmtree(tmp_path / "models" / "default" / SECOND)  # the pointer names a bundle that is gone
    gone = pointers.state("default")
    assert (gone.pointed, gone.candidates) == (None, [FIXTURE_VERSION])
    assert pointers.state("nothing").stamp is None
