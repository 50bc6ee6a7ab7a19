"""Unknown query parameters are refused (422), as unknown body fields are: a typo such as ``?limt=5`` must
not silently fall back to a default.

A pure ASGI middleware that does nothing unless the request has a query string, so ``/forecast`` pays
nothing for it; only then does it find the route and compare the names sent with the names it declares.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from closecast.errors import Problem


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(route: APIRoute) -> set[str]:
    """The query parameters the route and its dependencies declare."""
    return _query_names(route.dependant)


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
        route = next(
            (r for r in scope["app"].routes if isinstance(r, APIRoute) and r.matches(scope)[0] == Match.FULL),
            None,
        )
        unknown = sorted(set(sent) - _declared(route)) if route is not None else []
        if not unknown:
            await self.app(scope, receive, send)
            return
        known = ", ".join(sorted(_declared(route))) if route is not None else ""
        takes = f"this endpoint takes: {known}" if known else "this endpoint takes no query parameters"
        problems = [
            Problem(("query", name), f"query parameter {name!r} is not known; {takes}", "query_unknown", name)
            for name in unknown
        ]
        body = json.dumps({"detail": [p.as_dict() for p in problems]}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 422, "headers": headers})
        await send({"type": "http.response.body", "body": body})
