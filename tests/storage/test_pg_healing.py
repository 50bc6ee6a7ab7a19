"""Scale-out healing and promotion races through real processes: two API replicas (``python -m app``) on one
PostgreSQL of this module's own (stopped and started again on the same port and data directory, so the
session's shared server is never disturbed) and one shared models directory.

- After a 20 s outage, a promotion made 1 s after the database returns succeeds and reaches both replicas
  within ``CLOSECAST_RELOAD_INTERVAL_S`` + 1 s, for the default model and a named one, and ``/readyz``
  clears as fast.
- ``If-Match`` on the promote route: a stale version gets 412 with the current one; the current one or
  ``*`` promotes.
- Promotions sent at once to both replicas each answer the ``previous`` the history records, and the
  history chains (each ``previous`` is the version before it).
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from closecast import registry
from tests.helpers import (
    FIXTURE_BUNDLE,
    FIXTURE_VERSION,
    Server,
    copy_registry,
    running_server,
    start_cluster_or_skip,
    wait_for,
)
from tests.synthetic import calm_walk

KEY = "healing-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
RELOAD_S = 2.0  # the setting: replicas must follow within RELOAD_S + 1 s after an outage
OUTAGE_S = 20.0
SECOND = "20991124T000000Z-second00"
A1, A2 = "20991201T000000Z-aapl0001", "20991202T000000Z-aapl0002"


@dataclass
class Fleet:
    a: Server
    b: Server
    cluster: Any


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Any]:
    """A PostgreSQL server for this module alone (the outage stops it), or a skip (a failure in CI)."""
    cluster = start_cluster_or_skip()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def fleet(own_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = copy_registry(tmp_path_factory.mktemp("healing") / "models")
    shutil.copytree(FIXTURE_BUNDLE, root / "default" / SECOND)
    for version in (A1, A2):
        shutil.copytree(FIXTURE_BUNDLE, root / "aapl" / version)
    registry.set_current(root / "aapl", A1, "test")
    common = {
        "database_url": own_cluster.create_database(),
        "api_key": KEY,
        "reload_interval_s": str(RELOAD_S),
        "job_store_timeout_s": "1",
        "run_jobs": "false",
    }
    with running_server(root, **common) as a, running_server(root, **common) as b:
        yield Fleet(a, b, own_cluster)


def served(server: Server, model: str) -> str | None:
    """The version ``server`` answers a forecast of ``model`` with (None while it cannot answer)."""
    try:
        r = httpx.post(server.url + "/forecast", json={"closes": calm_walk(), "model": model}, timeout=5)
    except httpx.TransportError:
        return None
    return str(r.json()["model_version"]) if r.status_code == 200 else None


def promote(server: Server, model: str, version: str, if_match: str | None = None) -> httpx.Response:
    headers = {**AUTH, **({"If-Match": if_match} if if_match is not None else {})}
    return httpx.post(f"{server.url}/models/{model}/versions/{version}/promote", headers=headers, timeout=30)


def seconds_until(condition: Callable[[], bool], since: float, timeout: float = 30) -> float:
    """Seconds from ``since`` (monotonic) until ``condition`` holds, polled every 20 ms."""
    wait_for(condition, timeout=timeout, every=0.02)
    return time.monotonic() - since


def degraded(server: Server) -> list[str]:
    return list(httpx.get(server.url + "/readyz", timeout=5).json()["degraded"])


def test_after_an_outage_a_promotion_reaches_every_replica_within_the_reload_interval(fleet: Fleet) -> None:
    replicas = (fleet.a, fleet.b)
    for server in replicas:  # the named model is in memory on both: it has a pointer to follow
        assert served(server, "aapl") == A1 and served(server, "default") == FIXTURE_VERSION
    fleet.cluster.stop("fast")
    try:
        stopped = time.monotonic()
        wait_for(lambda: all(degraded(s) for s in replicas), timeout=OUTAGE_S)  # /readyz says so meanwhile
        assert all(served(s, "default") == FIXTURE_VERSION for s in replicas)  # serving goes on
        time.sleep(max(0.0, stopped + OUTAGE_S - time.monotonic()))
    finally:
        fleet.cluster.start()
    back = time.monotonic()
    readiness = Readiness(replicas)
    time.sleep(1.0)
    answer = promote(fleet.a, "default", SECOND)
    assert answer.status_code == 200, answer.text  # the first request after the return needs no retry
    assert answer.json()["previous"] == FIXTURE_VERSION
    sent = time.monotonic()
    took = seconds_until(lambda: all(served(s, "default") == SECOND for s in replicas), sent)
    assert took <= RELOAD_S + 1.0, f"{took:.2f} s"
    assert promote(fleet.b, "aapl", A2).status_code == 200
    sent = time.monotonic()
    took = seconds_until(lambda: all(served(s, "aapl") == A2 for s in replicas), sent)
    assert took <= RELOAD_S + 1.0, f"{took:.2f} s"
    cleared = readiness.cleared_at() - back
    assert cleared <= RELOAD_S + 1.0, f"{cleared:.2f} s; /readyz listed {readiness.last}"


class Readiness:
    """Polls ``/readyz`` of every replica in a thread from now on: ``cleared_at`` is the first moment none
    listed a problem (the promotions above run meanwhile)."""

    def __init__(self, replicas: tuple[Server, ...]) -> None:
        self.replicas = replicas
        self.last: list[list[str]] = []
        self._cleared: float | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + 60
        while self._cleared is None and time.monotonic() < deadline:
            try:
                self.last = [degraded(s) for s in self.replicas]
            except httpx.TransportError:
                continue
            if not any(self.last):
                self._cleared = time.monotonic()
            time.sleep(0.05)

    def cleared_at(self) -> float:
        self._thread.join(60)
        assert self._cleared is not None, f"/readyz still lists {self.last}"
        return self._cleared


def test_a_stale_if_match_gets_412_with_the_current_version(fleet: Fleet) -> None:
    now = promote(fleet.a, "aapl", A1).json()["version"]  # whatever the test before left
    refused = promote(fleet.b, "aapl", A2, if_match=f'"{A2}"')  # believes A2 current: it is not
    assert refused.status_code == 412, refused.text
    assert refused.json()["current"] == now == A1 and refused.headers["etag"] == f'"{A1}"'
    assert f"If-Match is {A2!r} but the current version of model 'aapl' is {A1!r}" in refused.json()["detail"]
    assert httpx.get(fleet.b.url + "/models/aapl/versions", timeout=10).json()["current"] == A1  # unchanged
    moved = promote(fleet.b, "aapl", A2, if_match=A1)  # unquoted is taken too
    assert moved.status_code == 200 and moved.json()["previous"] == A1 and moved.headers["etag"] == f'"{A2}"'
    assert promote(fleet.a, "aapl", A1, if_match="*").status_code == 200


def test_promotions_at_once_on_two_replicas_report_the_previous_the_history_records(fleet: Fleet) -> None:
    answers: list[dict[str, Any]] = []

    def send(server: Server, version: str, go: threading.Barrier) -> None:
        go.wait()
        response = promote(server, "default", version)
        assert response.status_code == 200, response.text
        answers.append(response.json())

    for _ in range(5):
        go = threading.Barrier(2)
        threads = [
            threading.Thread(target=send, args=(fleet.a, SECOND, go)),
            threading.Thread(target=send, args=(fleet.b, FIXTURE_VERSION, go)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    history = httpx.get(fleet.a.url + "/models/default/history", timeout=10).json()["promotions"][:10]
    assert len(answers) == 10
    recorded = sorted((p["to"], p["from"]) for p in history)
    assert sorted((a["version"], a["previous"]) for a in answers) == recorded
    assert all(newer["from"] == older["to"] for newer, older in itertools.pairwise(history))  # newest first
