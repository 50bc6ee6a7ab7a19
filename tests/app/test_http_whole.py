"""The server's protocol writes a response's head and body to the socket in one write.

A replica killed between two writes leaves nginx holding a head without a body, which it can no longer resend
elsewhere (app/http_whole.py). These tests drive the real protocol class with a transport that records each
write, as asyncio's would reach the socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.http_limits import LimitedHttpToolsProtocol

BODY = b'{"forecast": [101.5]}'


class RecordingTransport(asyncio.Transport):
    """Each ``write`` is kept as one entry: one entry is one send to the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: headers first, then the body in a later message, as Starlette sends them."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await asyncio.sleep(0)  # let the loop run between the two messages, as a real app may
    await send({"type": "http.response.body", "body": BODY})


async def streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A chunked answer in two body messages: the head goes with the first chunk, the second follows."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"one", "more_body": True})
    await send({"type": "http.response.body", "body": b"two"})


async def serve_once(
    app: Any, requests: bytes, protocol_class: type[HttpToolsProtocol] = LimitedHttpToolsProtocol
) -> RecordingTransport:
    config = Config(app=app, http=protocol_class, lifespan="off", access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(requests)
    for _ in range(50):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


REQUEST = b"POST /forecast HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


def test_head_and_body_leave_in_one_write() -> None:
    transport = asyncio.run(serve_once(answer, REQUEST))
    assert len(transport.writes) == 1, transport.writes
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 21" in head
    assert body == BODY


def test_each_pipelined_request_gets_one_write() -> None:
    transport = asyncio.run(serve_once(answer, REQUEST * 3))
    assert len(transport.writes) == 3, transport.writes
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(BODY) for w in transport.writes)


def test_a_streamed_answer_sends_its_head_with_the_first_chunk() -> None:
    transport = asyncio.run(serve_once(streamed, REQUEST))
    assert len(transport.writes) == 2, transport.writes
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"3\r\none\r\n")
    assert transport.writes[1] == b"3\r\ntwo\r\n0\r\n\r\n"


def test_without_the_protocol_the_head_goes_alone() -> None:
    """The failure this protects against, shown on uvicorn's own protocol: two writes, head first."""
    transport = asyncio.run(serve_once(answer, REQUEST, HttpToolsProtocol))
    assert len(transport.writes) == 2 and transport.writes[1] == BODY
