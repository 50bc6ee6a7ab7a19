"""The forecast routes' JSON bodies, parsed from the bytes ``BodyLimits`` buffered, in one pass.

FastAPI would ``json.loads`` a body into Python objects and validate those (290 ms for a 7.8 MB batch, on
the event loop); pydantic-core's ``model_validate_json`` does both at once (77 ms) with the same schema and
messages, and turns bodies FastAPI answered with a bare 400 (bytes that are not UTF-8, arrays nested 100k
deep, a 5000-digit number) into 422s that say what is wrong. Still, 77 ms of a 7.8 MB batch on the loop
multiplied a single forecast's p99 by 6.7 when two clients looped such batches, so batches over
``CLOSECAST_BIG_BODY_BYTES`` are parsed in ONE child process (``BatchParser``): the loop only waits.

The routes keep declaring their body model, so OpenAPI documents it exactly as before and FastAPI's own
answers for a missing body or a non-JSON content type stay. ``JSONBodyRoute`` only hands FastAPI the
model already validated; FastAPI accepts a model instance as it is (no second validation).
"""

from __future__ import annotations

import asyncio
import email.message
import functools
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from app.api import batch_child
from app.api.schemas import BatchForecastRequest, SeriesIn
from closecast.errors import ClosecastError

log = logging.getLogger(__name__)

CRASH_SHOWN_S = 300.0  # a child that died is listed in /readyz's degraded list this long after


class ParserCrashed(ClosecastError):
    """The batch-parsing child process died while parsing a body (503: the request may be retried)."""

    def __init__(self) -> None:
        super().__init__(
            "the process that parses large batches stopped while reading this body (killed, or out of "
            "memory); it has been restarted: retry, or send smaller batches"
        )


class BatchParser:
    """One child process that parses big ``/forecast/batch`` bodies; recreated when it dies.

    ``serve`` runs as one of the app's supervised background tasks (``app.main.background_tasks``): it
    creates the pool and shuts it down at the end. Creating it is cheap: the process is spawned (a fresh
    interpreter, not a fork of a server with threads and an event loop) on the first big body. A recent crash
    shows in ``/readyz``'s ``degraded`` list (``health``).
    """

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self.crashes = 0
        self._last_crash: float | None = None
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=batch_child.start,
            initargs=(self.nice,),
        )

    async def serve(self) -> None:
        """Own the child for the app's lifetime (a supervised background task); stop it at shutdown."""
        self.start()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Stop the child (blocking: run it in a thread)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def health(self) -> str | None:
        """A line for ``/readyz``'s ``degraded`` list while a recent crash is worth knowing about."""
        if self._last_crash is None or time.monotonic() - self._last_crash > CRASH_SHOWN_S:
            return None
        ago = time.monotonic() - self._last_crash
        return f"its child process died {self.crashes} time(s), last {ago:.0f} s ago; restarted"

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._pool is None:
            self.start()
        pool = self._pool
        assert pool is not None
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            self._replace(pool)
            raise ParserCrashed() from None

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:  # the first of the requests that saw it die replaces it
            self.crashes += 1
            self._last_crash = time.monotonic()
            log.error("the batch-parsing child process died; starting a new one")
            broken.shutdown(wait=False, cancel_futures=True)
            self.start()

    async def child_pid(self) -> int:
        """The child's process id (spawning it if needed)."""
        pid: int = await self._run(batch_child.pid)
        return pid

    async def parse(self, body: bytes) -> BatchForecastRequest:
        """The batch in ``body``, validated in the child; the same ``RequestValidationError`` as inline."""
        kind, value = await self._run(batch_child.parse_batch, body)
        if kind == "invalid":
            raise RequestValidationError(with_utf8_position(value, body))
        ids, flat, lengths, horizon, level, flat_features = value
        ends = np.cumsum(lengths).tolist()
        features = batch_child.unflatten_features(flat_features, len(ids))
        series = [  # closes are views of the one array (the forecaster takes arrays as well as lists)
            SeriesIn.model_construct(id=i, closes=flat[end - n : end], features=f)
            for i, end, n, f in zip(ids, ends, lengths.tolist(), features, strict=True)
        ]
        return BatchForecastRequest.model_construct(series=series, horizon=horizon, level=level)


_BOM = b"\xef\xbb\xbf"
# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or a \uDC00-\uDFFF one not after a high one;
# the lookbehind skips an escaped backslash ("\\ud800" is the text \ud800, not an escape).
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})(?<!\\)(?:\\\\)*\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def json_text_problem(body: bytes) -> str | None:
    """What makes ``body`` unusable as JSON text before any syntax: a UTF-8 byte order mark in front, or a
    lone surrogate escape (``\\ud800`` alone encodes no character); None when neither."""
    if body.startswith(_BOM):
        return "it starts with a UTF-8 byte order mark (BOM, bytes EF BB BF); send the JSON without it"
    if b"\\u" in body and (match := _LONE_SURROGATE.search(body)) is not None:
        escape = match.group(0).lstrip(b"\\")[-5:].decode("ascii")
        return (
            f"it has a lone surrogate escape \\{escape} at byte {match.end() - 6}, which encodes no "
            "character; send the character as UTF-8, or as a high and a low surrogate pair"
        )
    return None


def with_utf8_position(errors: list[dict[str, Any]], body: bytes) -> list[dict[str, Any]]:
    """A JSON syntax error in a body that is not UTF-8 says so, with where; one from a BOM or a lone surrogate
    escape names it (pydantic only says "expected value" or "unexpected end of hex escape")."""
    if not any(e["type"] == "json_invalid" for e in errors):
        return errors
    where = json_text_problem(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if where is None or not body.startswith(_BOM):
            line = body.count(b"\n", 0, exc.start) + 1
            column = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
            where = f"invalid UTF-8 at line {line} column {column} (byte 0x{body[exc.start]:02x})"
    if where is None:
        return errors
    return [{**e, "ctx": {"error": where}} if e["type"] == "json_invalid" else e for e in errors]


@functools.lru_cache(maxsize=256)  # parsing the header costs ~10 µs; clients send a handful of spellings
def _is_json(content_type: str | None) -> bool:
    """FastAPI's own test: only such bodies are decoded as JSON (others reach the model as bytes -> 422)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def parse_body(request: Request, model: type[BaseModel], body: bytes) -> BaseModel:
    """``body`` validated as ``model``: big batches in the child process, everything else right here."""
    if model is BatchForecastRequest and len(body) > request.app.state.settings.big_body_bytes:
        parser: BatchParser = request.app.state.batch_parser
        return await parser.parse(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(with_utf8_position(batch_child.body_errors(exc), body)) from None


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JSONBodyRoute(APIRoute):
    """A route whose JSON body model is validated from the raw bytes before FastAPI's handler runs."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler
        body_model: type[BaseModel] = model

        async def parse_then_handle(request: Request) -> Response:
            body = await request.body()
            if body and _is_json(request.headers.get("content-type")):
                # what FastAPI's handler would get from json.loads, already validated: it takes it as is
                request._json = await parse_body(request, body_model, body)
            return await handler(request)

        return parse_then_handle
