"""Unknown query parameters are refused (422), as unknown body fields are: a typo such as ``?limt=5`` must
not silently fall back to a default.

A pure ASGI middleware that does nothing unless the request has a query string, so ``/forecast`` pays
nothing for it; only then does it compare the names sent with the ones OpenAPI documents for the operation.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.openapi import operations_at
from closecast.errors import Problem


class RejectUnknownQuery:
    """Answer 422 when the query string names a parameter the matched route does not declare."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        sent = [
            name for name, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        ]
        operation = operations_at(scope["app"], scope["path"]).get(scope["method"])
        if operation is None:  # no such operation: routing answers 404 or 405
            await self.app(scope, receive, send)
            return
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        unknown = sorted(set(sent) - declared)
        if not unknown:
            await self.app(scope, receive, send)
            return
        known = ", ".join(sorted(declared))
        takes = f"this endpoint takes: {known}" if known else "this endpoint takes no query parameters"
        problems = [
            Problem(("query", name), f"query parameter {name!r} is not known; {takes}", "query_unknown", name)
            for name in unknown
        ]
        body = json.dumps({"detail": [p.as_dict() for p in problems]}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 422, "headers": headers})
        await send({"type": "http.response.body", "body": body})
