"""Pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task per request).

``BodyLimits`` reads every request body before the app sees it, under three rules: a limit per route (413
when it is declared or streamed over it), one deadline for the whole body (408 when a client stalls or
trickles), and a few slots for big bodies (503 + Retry-After when they wait too long for one), so a flood of
8 MB batches cannot fill memory. ``RequestMetrics`` counts every answer, these included, by route template,
so unknown paths cannot blow up the label set.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.memory import trim_heap
from app.metrics import Metrics

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Limit:
    """A route's body limit, the setting it comes from and what to do instead (for the 413's message)."""

    bytes: int
    setting: str = ""
    advice: str = "send a smaller body"


def route_limits(settings: Settings) -> dict[str, Limit]:
    """The body limit of each route that takes more than a small body; other routes get ``DEFAULT``."""
    # 32 bytes per close is generous JSON ("4766.183333333333, "), plus room for horizon, level and spaces
    single = Limit(
        max(DEFAULT.bytes, 32 * settings.max_closes + 4096),
        "from CLOSECAST_MAX_CLOSES",
        f"send at most the latest {settings.max_closes} closes",
    )
    return {
        "/forecast": single,
        "/noop/forecast": single,
        "/forecast/batch": Limit(
            settings.max_body_bytes, "CLOSECAST_MAX_BODY_BYTES", "send fewer or shorter series"
        ),
        # closes and, optionally, as many ISO dates ("2017-04-19T09:00:00+00:00", ~30 bytes each)
        "/backtest": Limit(
            max(DEFAULT.bytes, 64 * settings.max_closes + 4096),
            "from CLOSECAST_MAX_CLOSES",
            f"send at most the latest {settings.max_closes} closes (and dates)",
        ),
        "/train": Limit(settings.max_upload_bytes, "CLOSECAST_MAX_UPLOAD_BYTES", "send a smaller file"),
        VERSIONS_PATH: Limit(
            settings.max_upload_bytes, "CLOSECAST_MAX_UPLOAD_BYTES", "send a smaller bundle archive"
        ),
    }


VERSIONS_PATH = "/models/{model}/versions"  # POST: a bundle upload (app/api/bundle_upload.py)
_VERSIONS = re.compile(r"^/models/[^/]+/versions$")


def limit_of(limits: dict[str, Limit], path: str) -> Limit:
    """The limit of a concrete path: its own, the upload's for ``/models/<name>/versions``, a batch's for the
    inference protocol's infer paths, else DEFAULT."""
    if path in limits:
        return limits[path]
    if _is_oip_infer(path):
        return limits["/forecast/batch"]
    return limits.get(VERSIONS_PATH, DEFAULT) if _VERSIONS.match(path) else DEFAULT


async def _refuse(send: Send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
    """A JSON ``{"detail"}`` answer that closes the connection: the unread rest of the body is never read
    as the next request."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


DEFAULT = Limit(64 * 1024)  # routes that take no body, or a small one (promotion)


def _is_oip_infer(path: str) -> bool:
    """The inference protocol's infer paths (their model name varies, so no entry of ``route_limits``)."""
    return path.startswith("/v2/models/") and path.endswith("/infer")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimits:
    """Buffer each request body within its route's limit and the body deadline, then hand it on whole.

    Bodies over ``big_body_bytes`` (and chunked bodies on routes that allow more) first take one of
    ``big_body_slots``; while they wait, uvicorn's flow control has paused their socket, so waiting costs no
    memory. After the last big request ends, freed heap goes back to the OS (``trim_heap``, in a thread).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limits = route_limits(settings)
        self.timeout_s = settings.body_timeout_s
        self.big_bytes = settings.big_body_bytes
        self.big_wait_s = settings.big_body_wait_s
        self._slots = settings.big_body_slots
        self._big: anyio.Semaphore | None = None  # made on first use, in the running event loop
        self._big_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", "")).rstrip("/") or "/"
        limit = limit_of(self.limits, path)
        declared = _declared_length(scope)
        if declared is not None and declared > limit.bytes:
            await _refuse(send, 413, _too_large(f"{declared} bytes", path, limit))
            return
        big = declared > self.big_bytes if declared is not None else limit.bytes > self.big_bytes
        if not big:
            await self._read_and_call(scope, receive, send, path, limit)
            return
        if self._big is None:
            self._big = anyio.Semaphore(self._slots)
        acquired = False
        with anyio.move_on_after(self.big_wait_s):
            await self._big.acquire()
            acquired = True
        if not acquired:
            retry = (b"retry-after", b"5")
            await _refuse(send, 503, "too many large bodies are being read now; retry shortly", retry)
            return
        self._big_in_flight += 1
        try:
            await self._read_and_call(scope, receive, send, path, limit)
        finally:
            self._big.release()
            self._big_in_flight -= 1
            if self._big_in_flight == 0:  # the last big request is done: give its memory back, off the loop
                asyncio.get_running_loop().run_in_executor(None, trim_heap)

    async def _read_and_call(
        self, scope: Scope, receive: Receive, send: Send, path: str, limit: Limit
    ) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        with anyio.move_on_after(self.timeout_s) as deadline:
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit.bytes:
                    await _refuse(send, 413, _too_large(f"more than {limit.bytes} bytes", path, limit))
                    return
                if chunk:
                    chunks.append(chunk)
                more = message.get("more_body", False)
        if deadline.cancelled_caught:
            await _refuse(
                send,
                408,
                f"the request body did not arrive within {self.timeout_s:g} s "
                "(CLOSECAST_BODY_TIMEOUT_S); send it in one go, or smaller",
            )
            return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks
        await self.app(scope, _replay(body, receive), send)


def _too_large(size: str, path: str, limit: Limit) -> str:
    source = f" ({limit.setting})" if limit.setting else ""
    return f"request body is {size} but {path} accepts at most {limit.bytes}{source}; {limit.advice}"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands on the buffered body as one message, then listens to the client again (for
    ``http.disconnect``). It drops its own reference once delivered: the request object holds it from then."""
    held: list[bytes] = [body]

    async def replay() -> Message:
        if not held:
            return await receive()
        message: dict[str, Any] = {"type": "http.request", "body": held.pop(), "more_body": False}
        return message

    return replay


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
