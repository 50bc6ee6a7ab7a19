"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task per request).

``BodySizeLimit`` answers 413 before the app sees a body larger than ``max_body_bytes``, whether the client
declares it in Content-Length or streams it chunked. ``RequestMetrics`` counts every answer, 413s included,
by route template, so unknown paths cannot blow up the label set.
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _too_large(send: Send, size: str, limit: int) -> None:
    body = json.dumps(
        {
            "detail": f"request body is {size} bytes but at most {limit} are accepted "
            f"(CLOSECAST_MAX_BODY_BYTES); send fewer or shorter series"
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Buffer the request body up to ``max_bytes`` and hand it on; beyond that, answer 413 at once."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, declared.decode(), self.max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(send, f"more than {self.max_bytes}", self.max_bytes)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count requests and time them by route template (``/forecast``), method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, plain_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        self.plain_paths = plain_paths  # routes FastAPI does not tag in the scope (/docs, /openapi.json)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = scope["path"] if scope["path"] in self.plain_paths else "<unmatched>"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)
