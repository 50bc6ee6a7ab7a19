"""``CLOSECAST_PROTECT_READS``: the registry, jobs, metrics and API docs behind the key too.

Reads are open by default (the key guards what changes the service: training and promotion). With
``CLOSECAST_PROTECT_READS=true`` every path under ``PROTECTED_READS`` needs ``Authorization: Bearer <key>``
as well; health (``/healthz``, ``/readyz``) and forecasts stay open. A pure ASGI middleware, so FastAPI's own
``/docs``, ``/redoc`` and ``/openapi.json`` are covered without redefining them.
"""

from __future__ import annotations

import hmac
import json

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from app.jobs.errors import AuthFailed

PROTECTED_READS = ("/models", "/train", "/metrics", "/docs", "/redoc", "/openapi.json")


def bearer_matches(key: SecretStr, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``key`` (constant-time compare)."""
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        sent = ""
    return hmac.compare_digest(sent.strip().encode(), key.get_secret_value().encode())


class ProtectReads:
    """Answer 401 to a request for a protected path that does not carry the key."""

    def __init__(self, app: ASGIApp, key: SecretStr, protected: tuple[str, ...] = PROTECTED_READS) -> None:
        self.app = app
        self.key = key
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected):
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if bearer_matches(self.key, sent):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": AuthFailed().message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
