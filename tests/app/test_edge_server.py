"""The edge of the server the project ships (``python -m app``), through a real process on loopback: request
heads bounded in size (431) and in time (408) with memory flat under abuse, HEAD on GET routes, the docs
served from the package, and training file names shown only to the key holder."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, Server, running_server

KEY = "edge-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
HEADER_TIMEOUT_S = 2.0
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m app`` on a copy of the shipped registry (its default model was trained on named files)."""
    models = tmp_path_factory.mktemp("edge") / "models"
    shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("*.sqlite*"))
    with running_server(models, api_key=KEY, header_timeout_s=str(HEADER_TIMEOUT_S)) as running:
        yield running


def _address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_answer(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes (or ``timeout`` passes without a byte)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def test_a_64_kib_header_is_refused_with_431(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n")
        answer = _read_answer(sock, 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert "CLOSECAST_MAX_HEADER_BYTES" in json.loads(body)["detail"]


def test_headers_under_the_limit_are_served(server: Server) -> None:
    response = httpx.get(server.url + "/readyz", headers={"X-Padding": "a" * 12 * 1024})
    assert response.status_code == 200


def test_many_headers_adding_up_past_the_limit_are_refused(server: Server) -> None:
    headers = {f"X-Part-{i}": "b" * 1000 for i in range(20)}  # each small, 20 KB together
    assert httpx.get(server.url + "/readyz", headers=headers).status_code == 431


def test_a_stalled_header_is_cut_off_within_the_timeout(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: test\r\nX-Slow: ")  # ... and nothing more
        started = time.monotonic()
        answer = _read_answer(sock, HEADER_TIMEOUT_S + 10)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"CLOSECAST_HEADER_TIMEOUT_S" in answer
    assert waited < HEADER_TIMEOUT_S + 5  # cut off by the header deadline, not by the socket's own timeout


def test_a_trickled_header_is_cut_off_though_bytes_keep_coming(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() < deadline and not answer:
            try:
                sock.sendall(b"a")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_an_idle_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with socket.create_connection(_address(server)) as sock:
        assert _read_answer(sock, HEADER_TIMEOUT_S + 10) == b""  # closed without an answer
        sock.settimeout(1)
        assert sock.recv(1) == b""


def _send_huge_header(address: tuple[str, int], size: int) -> None:
    """Send a request whose one header is ``size`` bytes, as fast as the server takes it, until it closes."""
    chunk = b"c" * (256 * 1024)
    with socket.create_connection(address) as sock:
        sock.settimeout(30)
        try:
            sock.sendall(b"POST /forecast HTTP/1.1\r\nHost: test\r\nX-Huge: ")
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # refused and closed: what should happen


def test_four_clients_with_32_mb_headers_leave_memory_flat(server: Server) -> None:
    for _ in range(20):  # warm up: the first requests allocate for good
        httpx.get(server.url + "/readyz")
    before = _rss_bytes(server.proc.pid)
    clients = [threading.Thread(target=_send_huge_header, args=(_address(server), 32 * MB)) for _ in range(4)]
    for client in clients:
        client.start()
    peak = before
    while any(c.is_alive() for c in clients):
        peak = max(peak, _rss_bytes(server.proc.pid))
        time.sleep(0.05)
    for client in clients:
        client.join()
    after = _rss_bytes(server.proc.pid)
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert abs(after - before) < 20 * MB, (before, peak, after)
    assert peak - before < 20 * MB, (before, peak, after)


def test_head_is_answered_on_get_routes(server: Server) -> None:
    for path in ("/readyz", "/healthz", "/models", "/models/current", "/metrics", "/openapi.json", "/docs"):
        got, head = httpx.get(server.url + path), httpx.head(server.url + path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"", path
        assert head.headers.get("content-type") == got.headers.get("content-type"), path
    assert httpx.head(server.url + "/models/no-such-model").status_code == 404


def test_docs_name_no_outside_host_and_their_assets_are_served(server: Server) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(server.url + page).text
        assert not re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", html), html
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', html)
        assert assets, html
        for asset in assets:
            assert httpx.get(server.url + asset).status_code == 200, asset


def _training_names(models: Path) -> set[str]:
    """The file and series names the shipped default model was trained on, from its manifest."""
    version = (models / "default" / "current").read_text().strip()
    data = json.loads((models / "default" / version / "manifest.json").read_text())["data"]
    names = {s[k] for s in data.get("series", []) for k in ("name", "source")}
    names |= {Path(n).stem for n in names} | ({data["source"]} if data.get("source") else set())
    assert names, data
    return names


def test_the_card_names_no_training_file_without_the_key(server: Server) -> None:
    names = _training_names(ROOT / "models")
    for path in ("/models/current", "/models/default", "/models", "/models/default/versions"):
        public = httpx.get(server.url + path).text
        assert not [n for n in names if n in public], (path, public[:500])
    for path in ("/models/current", "/models/default"):
        keyed = httpx.get(server.url + path, headers=AUTH).text
        assert all(n in keyed for n in names), path  # the key holder sees them all
    card = httpx.get(server.url + "/models/current").json()
    keyed_card = httpx.get(server.url + "/models/current", headers=AUTH).json()
    series = card["data"]["series"]
    assert [s["name"] for s in series] == [f"series {i + 1}" for i in range(len(series))]
    assert [s["rows"] for s in series] == [s["rows"] for s in keyed_card["data"]["series"]]
    assert [s["date_start"] for s in series] == [s["date_start"] for s in keyed_card["data"]["series"]]
    assert list(card["metrics"]["series"]) == [s["name"] for s in series]
    assert list(card["metrics"]["series"].values()) == list(keyed_card["metrics"]["series"].values())
