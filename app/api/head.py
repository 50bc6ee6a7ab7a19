"""``HEAD`` on every ``GET`` route: FastAPI's routes take only the methods they declare, so a HEAD-based
health check of ``/readyz`` got 405. This ASGI layer hands the app a ``GET`` in a copy of the scope; the
server keeps the original ``HEAD`` scope, so uvicorn sends the GET's status and headers (``content-length``
included) without the body. The OpenAPI schema keeps documenting ``GET`` alone, as HTTP defines HEAD by it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGet:
    """Answer ``HEAD`` as the same ``GET`` would be answered, minus the body (which the server drops)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)
