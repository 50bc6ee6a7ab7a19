"""The committed nginx config (deploy/nginx.conf, mounted by compose.yaml) in a real nginx in front of real
replicas: forecasts survive a replica SIGKILLed under load, and requests that change something are sent once.

nginx comes from Debian (``apt-get install -y nginx-light``); without it these tests skip, and fail under
``CLOSECAST_REQUIRE_NGINX=1`` (set by .ci/run).
"""

from __future__ import annotations

import csv
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import SYNTHETIC_CSV, Server, copy_registry, running_server
from tests.nginx import REQUIRE_ENV, REQUIRED, Load, Nginx, missing_reason, running_nginx, running_replicas

CLOSES = [float(row["Close"]) for row in csv.DictReader(SYNTHETIC_CSV.read_text().splitlines())]
FORECAST = {"closes": CLOSES[-30:]}
INFER = {"inputs": [{"name": "closes", "shape": [1, 30], "datatype": "FP64", "data": CLOSES[-30:]}]}


@pytest.fixture(scope="module", autouse=True)
def _nginx_installed() -> None:
    reason = missing_reason()
    if reason and REQUIRED:
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    if reason:
        pytest.skip(reason)


def _address(server: Server) -> str:
    return server.url.removeprefix("http://")


def test_no_forecast_fails_while_a_replica_is_killed_under_load(tmp_path: Path) -> None:
    with running_replicas(tmp_path) as (a, b), running_nginx([_address(a), _address(b)]) as nginx:
        with Load(nginx.url, "/forecast", FORECAST).running() as load:
            time.sleep(1.5)
            b.proc.kill()  # SIGKILL: no goodbye, forecasts in flight on b are cut off
            killed_at = time.time()
            time.sleep(2.5)
        b.proc.wait(timeout=10)
        log = [line for line in nginx.access(len(load.statuses)) if line.uri == "/forecast"]
        errors = nginx.errors()

    # A replica killed after its answer's head reached nginx and before its body did would be the one failure
    # nginx cannot hide (it has passed the head on): the server writes each answer's head and body at once
    # (app/http_whole.py), so nginx gets all of an answer or none of it, and resends the latter.
    assert load.errors == [], f"killed at {killed_at:.3f}; {load.errors[:3]}; {errors[-3000:]}"
    assert load.statuses and set(load.statuses) == {200}, sorted(set(load.statuses))  # no 502, no 503
    assert len(log) == len(load.statuses)
    after = [line for line in log if line.at > killed_at + 0.5]  # ended well after b was gone
    assert after, "no forecast was sent after the kill"
    assert {line.upstreams[-1] for line in after} == {_address(a)}  # the survivor answered them all
    # b was still in the rotation when it died: nginx sent forecasts to it, then the same ones to a
    moved = [line for line in log if line.upstreams[:1] == (_address(b),) and len(line.upstreams) > 1]
    assert moved, "no forecast was moved from the killed replica to the survivor"
    assert {line.upstreams[-1] for line in moved} == {_address(a)}
    assert "no live upstreams" not in errors


class Hangup:
    """A replica that dies mid-request: it accepts a connection, reads the request head, and hangs up
    without answering. ``seen`` counts the requests that reached it, as ``METHOD /path``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the test is over
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                    head += chunk
                if head:
                    self.seen.append(" ".join(head.split(b"\r\n", 1)[0].decode().split(" ")[:2]))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(copy_registry(tmp_path_factory.mktemp("replica") / "models")) as server:
        yield server


@contextmanager
def _hangup_first(replica: Server) -> Iterator[tuple[Nginx, Hangup]]:
    """nginx over [a replica that hangs up, a real one], fresh, so its first request goes to the first."""
    hangup = Hangup()
    try:
        with running_nginx([hangup.address, _address(replica)]) as nginx:
            yield nginx, hangup
    finally:
        hangup.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/forecast", FORECAST),
        ("POST", "/forecast/batch", {"series": [{"id": "a", **FORECAST}]}),
        ("POST", "/backtest", {"closes": CLOSES[-200:], "folds": 2}),
        ("POST", "/v2/models/default/infer", INFER),
    ],
)
def test_a_read_only_post_cut_off_by_a_dying_replica_is_resent(
    replica: Server, method: str, path: str, body: object
) -> None:
    with _hangup_first(replica) as (nginx, hangup):
        answer = httpx.request(method, nginx.url + path, json=body, timeout=20)
        log = nginx.access(at_least=1)
    assert hangup.seen == [f"{method} {path}"]  # it was sent, the replica hung up...
    assert answer.status_code == 200, answer.text  # ...and the client got the real replica's answer
    assert [line.upstreams for line in log] == [(hangup.address, _address(replica))]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/train"),
        ("POST", "/models/default/versions/20240101T000000Z/promote"),
        ("POST", "/models/spx/versions"),
        ("DELETE", "/models/spx"),
        ("DELETE", "/train/abc"),
    ],
)
def test_a_request_that_changes_something_is_sent_once(replica: Server, method: str, path: str) -> None:
    with _hangup_first(replica) as (nginx, hangup):
        answers = []
        while not hangup.seen and len(answers) < 4:  # round robin: the first or the second request
            answers.append(httpx.request(method, nginx.url + path, content=b"{}", timeout=20))
        log = nginx.access(at_least=len(answers))
    assert hangup.seen == [f"{method} {path}"]
    # the one the dying replica took was not sent to the other: its client got 502 and may decide itself
    assert answers[-1].status_code == 502
    assert all(a.status_code != 502 for a in answers[:-1])  # the others reached the real replica
    assert [line.upstreams for line in log][-1] == (hangup.address,)
    assert all(len(line.upstreams) == 1 for line in log)
