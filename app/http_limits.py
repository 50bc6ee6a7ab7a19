"""The HTTP protocol ``closecast serve`` runs: uvicorn's httptools protocol with a bounded request head.

uvicorn's httptools protocol puts no limit on request headers (httptools accumulates a header of any size in
memory before handing it on) and no deadline on them (bodies have ``CLOSECAST_BODY_TIMEOUT_S``; a head can
trickle for ever). Four clients sending 32 MB headers grew a server by 240 MB; 4,000 trickling a header held
4,000 connections. This subclass adds both limits:

- **size**: the request head (request line and header lines, as sent) may be at most
  ``CLOSECAST_MAX_HEADER_BYTES``; more is answered ``431`` and the connection closed. Bytes are counted as
  they arrive, before the parser sees them, so at most one read (256 KiB) past the limit is ever held.
- **time**: the head must be complete within ``CLOSECAST_HEADER_TIMEOUT_S`` of the connection opening, or of
  the first byte of the next request on a kept-alive connection; else ``408`` and the connection closed.

Only the project's own server command uses it (``app/__main__.py``); a bare ``uvicorn app.main:app`` has
neither limit. It also sends each response's head with its body in one write (``app/http_whole.py``).
"""

from __future__ import annotations

import asyncio
import json
from asyncio import TimerHandle
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings
from app.http_whole import send_head_with_body

# After a refusal the connection stays open this long, reading and discarding what the client still sends,
# so the answer is not lost to a reset (a close with unread bytes sends RST); then it is closed.
LINGER_S = 2.0
# Request line and header framing the parser's callbacks do not hand on: "GET " ... " HTTP/1.1\r\n", ": "
# and "\r\n" per header, the blank line.
_REQUEST_LINE_FRAMING = 16
_HEADER_FRAMING = 4


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a request whose head is too large."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit (431) and a deadline (408) on each request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.max_header_bytes
        self.head_timeout_s = settings.header_timeout_s
        self.in_head = True  # between a message's start (or the connection's) and its headers' end
        self.head_bytes = 0  # bytes received for the head being read, as sent
        self.head_counted = 0  # the head as the parser handed it on (url, names, values, framing)
        self.head_timer: TimerHandle | None = None
        self.refused = False

    # --- connection ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:  # lingering after a refusal: discard
            return
        self._unset_keepalive_if_required()
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # this server runs without websockets
            return
        except httptools.HttpParserError:
            if self.refused:
                return  # a callback refused the head and has answered
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self.in_head and self.head_bytes > self.max_head_bytes:
            self._refuse_head_too_large(self.head_bytes)

    # --- parser callbacks ----------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_counted = _REQUEST_LINE_FRAMING
        if self.head_timer is None:  # the next request on a kept-alive connection
            self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        self.head_counted += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_counted += len(name) + len(value) + _HEADER_FRAMING
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._cancel_head_timer()
        if self.head_counted > self.max_head_bytes:
            self._refuse_head_too_large(self.head_counted)
            raise _HeadRefused
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:
            send_head_with_body(self.cycle)  # a new request's cycle: its head goes out with its body

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True  # what comes next on this connection is the next request's head
        self.head_bytes = 0

    # --- refusals ------------------------------------------------------------------------------------------
    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.in_head or self.refused or self.transport.is_closing():
            return
        if self.head_bytes == 0:
            self.transport.close()  # nothing sent at all: nobody to answer
            return
        self._refuse(
            408,
            f"the request headers did not arrive within {self.head_timeout_s:g} s "
            "(CLOSECAST_HEADER_TIMEOUT_S); send them at once",
        )

    def _refuse_head_too_large(self, size: int) -> None:
        self._refuse(
            431,
            f"the request headers are more than {self.max_head_bytes} bytes ({size} received); at most "
            f"{self.max_head_bytes} (CLOSECAST_MAX_HEADER_BYTES); send fewer or shorter headers",
        )

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``{"detail": message}``, stop parsing, close after a short linger."""
        if self.refused or self.transport.is_closing():
            return
        self.refused = True
        self._cancel_head_timer()
        self.logger.warning("refused a request head: %s", message)
        body = json.dumps({"detail": message}).encode()
        head = [self._status_line(status)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer and EOF while we drain what it sends
        self.loop.call_later(LINGER_S, self.transport.close)

    @staticmethod
    def _status_line(status: int) -> bytes:
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        return b"HTTP/1.1 " + str(status).encode() + b" " + phrase + b"\r\n"
