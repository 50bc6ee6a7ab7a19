"""Slow clients against a real server (``python -m app``): a body that stalls gets a 408 and a closed
connection; a big body that cannot get a big-body slot in time gets a 503 with Retry-After."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.helpers import FIXTURE_MODELS, Server, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    settings = {
        "body_timeout_s": "1",
        "big_body_bytes": "2048",
        "big_body_slots": "1",
        "big_body_wait_s": "0.3",
    }
    with running_server(FIXTURE_MODELS, **settings) as s:
        yield s


def _start_body(server: Server, path: str, length: int, part: bytes) -> socket.socket:
    """A connection that sent the headers of a ``length``-byte body and only ``part`` of it."""
    url = urlsplit(server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    )
    sock.sendall(head.encode() + b"\r\n" + part)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_body_that_stalls_is_408_and_the_connection_closed(server: Server) -> None:
    started = time.monotonic()
    with _start_body(server, "/forecast", 1000, b'{"closes": [100.0, ') as sock:
        answer = _read_until_closed(sock)  # returns only once the server closed the connection
    assert time.monotonic() - started < 8
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer.lower()
    assert b"the request body did not arrive within 1 s (CLOSECAST_BODY_TIMEOUT_S)" in answer


def test_big_body_that_waits_too_long_for_a_slot_is_503(server: Server) -> None:
    with _start_body(server, "/forecast/batch", 5000, b'{"series": [') as holder:  # takes the only slot
        time.sleep(0.2)
        with _start_body(server, "/forecast/batch", 5000, b'{"series": [') as waiter:
            answer = _read_until_closed(waiter)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 5" in answer.lower()
        assert b"too many large bodies are being read now; retry shortly" in answer
        assert _read_until_closed(holder).startswith(b"HTTP/1.1 408 ")  # and the slot is free again
