"""Send each response's head together with its first body bytes, in one write to the socket.

uvicorn writes a response's status line and headers the moment the app starts the response, and its body in a
second write. A replica killed between the two leaves a proxy holding a head with no body: nginx has already
passed the head on, so it cannot resend the request to another replica, and the client gets a cut-off answer
(measured through nginx with a replica SIGKILLed under load: one cut-off forecast in 4 of 25 kills). With both
in one write the kernel sends either nothing (the proxy resends the request elsewhere) or the whole answer of
a small response. Large or streamed bodies still go out in several writes; every forecast answer is one.
"""

from __future__ import annotations

from typing import Any


class _Holding:
    """A transport that keeps what is written; everything else goes to the real one."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.held.append(bytes(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Prefixing:
    """A transport whose first write is sent after ``head``, as one write."""

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        if self.head is not None:
            data, self.head = self.head + bytes(data), None
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def send_head_with_body(cycle: Any) -> None:
    """Make ``cycle`` (uvicorn's request-response cycle: its ``transport`` and ``send``) hold its response
    head back until the first body message, then write both at once."""
    send = cycle.send
    held: list[bytes] = []

    async def whole_send(message: Any) -> None:
        kind = message.get("type")
        transport = cycle.transport
        if kind == "http.response.start":
            holding = _Holding(transport)
            cycle.transport = holding
            try:
                await send(message)
            finally:
                cycle.transport = transport
            held.extend(holding.held)
            return
        if kind == "http.response.body" and held:
            prefixing = _Prefixing(transport, b"".join(held))
            held.clear()
            cycle.transport = prefixing
            try:
                await send(message)
            finally:
                cycle.transport = transport
            if prefixing.head is not None and not transport.is_closing():
                transport.write(prefixing.head)  # the body write did not happen: the head still goes out
            return
        await send(message)

    cycle.send = whole_send
