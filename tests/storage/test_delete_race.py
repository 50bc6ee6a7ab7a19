"""Deleting a version while another replica promotes it: the database serialises the two, so no pointer ever
names a version that was removed. Two API replicas (``python -m app``) with their own empty model dirs, a
real S3-compatible server (moto's) and a throwaway PostgreSQL.

The interleaving is made, not hoped for: a test connection holds the model's pointer row (``FOR UPDATE``),
so the promotion through one replica stops inside its transaction, past every check it makes before; the
deletion is sent to the other replica then, and the row let go only once the deletion has either finished
(what happened before the fix) or is waiting for the promotion's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from app.storage.s3 import S3Store
from closecast.objectstore import StoreRegistry
from tests.helpers import (
    DEFAULT,
    FIXTURE_VERSION,
    Server,
    wait_for,
)
from tests.jobs.helpers import AUTH
from tests.s3 import S3Server
from tests.storage.store_pair import Pair, store_pair, upload


@pytest.fixture(scope="module")
def pair(
    pg_url: str, s3_server: S3Server, aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("deleterace")
    # a promotion waits on the held row without giving up
    with store_pair(tmp, pg_url, s3_server, job_store_timeout_s="20") as pair:
        yield pair


def _upload(server: Server, model: str) -> str:
    sent = upload(server, model)
    assert sent.status_code == 201, sent.text
    version: str = sent.json()["version"]
    return version


def _promote(server: Server, model: str, version: str, headers: dict[str, str] = AUTH) -> httpx.Response:
    url = f"{server.url}/models/{model}/versions/{version}/promote"
    return httpx.post(url, headers=headers, timeout=60)


def _waiting(watch: psycopg.Connection[tuple[object, ...]], what: str) -> bool:
    """Whether a backend here waits for a lock: ``row`` (a row another transaction holds) or ``advisory``."""
    events = ["transactionid", "tuple"] if what == "row" else ["advisory"]
    found = watch.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = ANY(%s) "
        "AND datname = current_database()",
        (events,),
    ).fetchone()
    return bool(found and found[0])


def _in_thread(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    return thread, answers


def _race(
    pair: Pair, model: str, promote: Callable[[], httpx.Response], delete: Callable[[], httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """The promotion held inside its transaction, the deletion sent meanwhile, then both let go."""
    with (
        psycopg.connect(pair.pg_url, autocommit=True) as watch,
        psycopg.connect(pair.pg_url) as holder,
    ):
        holder.execute("SELECT 1 FROM pointers WHERE model = %s FOR UPDATE", (model,))
        promoting, promoted = _in_thread(promote)
        wait_for(lambda: _waiting(watch, "row"), timeout=30, every=0.05)
        deleting, deleted = _in_thread(delete)
        wait_for(lambda: bool(deleted) or _waiting(watch, "advisory"), timeout=30, every=0.05)
        holder.rollback()  # the promotion goes on
    promoting.join(60)
    deleting.join(60)
    assert promoted and deleted, "a request did not answer"
    return promoted[0], deleted[0]


def test_a_version_being_promoted_on_one_replica_is_not_deleted_through_the_other(pair: Pair) -> None:
    version = _upload(pair.a, DEFAULT)
    promoted, deleted = _race(
        pair,
        DEFAULT,
        lambda: _promote(pair.b, DEFAULT, version),
        lambda: httpx.delete(f"{pair.a.url}/models/{DEFAULT}/versions/{version}", headers=AUTH, timeout=60),
    )
    assert promoted.status_code == 200, promoted.text
    assert deleted.status_code == 409, deleted.text  # checked once the promotion was in: now current
    assert pair.pointer(DEFAULT) == version
    assert version in pair.bundles.versions(DEFAULT)  # the pointer names a version every replica can get
    rollback = _promote(pair.a, DEFAULT, FIXTURE_VERSION)
    assert rollback.status_code == 200, rollback.text


def test_a_version_deleted_after_a_promotion_checked_it_is_not_promoted(pair: Pair) -> None:
    """A promotion whose checks (the route's: the store lists the version) passed just before another
    replica deleted it: the pointer store, asked to promote it from a cache that still holds it, refuses
    under the model's lock, and does not upload it again from that cache."""
    from app.storage.pg import Database
    from app.storage.pg_pointers import PostgresPointers
    from closecast.pointer_store import FilePointers

    version = _upload(pair.a, DEFAULT)
    cache = pair.tmp / "late"
    bundles = StoreRegistry(S3Store(pair.store_url), cache)
    assert bundles.fetch(DEFAULT, version)  # a replica that loaded it: its cache holds it
    deleted = httpx.delete(f"{pair.a.url}/models/{DEFAULT}/versions/{version}", headers=AUTH, timeout=60)
    assert deleted.status_code == 200, deleted.text

    db = Database(pair.pg_url)
    db.open()
    try:
        with pytest.raises(ValueError, match="not a bundle"):
            PostgresPointers(db, FilePointers(cache), bundles).promote(DEFAULT, version, "test: late")
    finally:
        db.close()
    assert pair.pointer(DEFAULT) == FIXTURE_VERSION
    assert version not in pair.bundles.versions(DEFAULT)  # not uploaded again from the cache


def test_a_model_deleted_while_another_replica_promotes_in_it_is_gone_everywhere(pair: Pair) -> None:
    first = _upload(pair.a, "extra")  # a new model's first version is made current
    second = _upload(pair.a, "extra")
    promoted, deleted = _race(
        pair,
        "extra",
        lambda: _promote(pair.b, "extra", second),
        lambda: httpx.delete(f"{pair.a.url}/models/extra", headers=AUTH, timeout=60),
    )
    assert promoted.status_code == 200, promoted.text
    assert deleted.status_code == 200, deleted.text
    assert pair.pointer("extra") is None
    assert not S3Store(pair.store_url).keys("extra/")  # no version, no pointer copy written after it
    assert "extra" not in pair.bundles.models()
    assert first != second
