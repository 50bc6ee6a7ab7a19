"""``POST /forecast`` answered without FastAPI's request machinery, the same bytes as through it.

FastAPI's routing, dependency solving, exception layers and response wrapping cost about as much per
request as the forecast itself (py-spy: README "Measured speed"). This ASGI layer, inside ``BodyLimits``
(the body is already whole) and ``RequestMetrics`` (still counted, under the route's template), answers a
well-formed ``/forecast`` itself: ``ForecastRequest.model_validate_json`` on the bytes, then the route's
own ``answer_one``. Anything else (another path, a body that does not validate, a limit exceeded, no
model yet, an error of any kind before the answer starts) goes on to FastAPI with the body replayed, so
every error, 422 text and header stays exactly FastAPI's, and the OpenAPI docs still come from the route.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.bodies import _is_json
from app.api.routes.forecast import answer_one
from app.api.schemas import ForecastRequest

PATH = "/forecast"


class ForecastFastPath:
    """Answer well-formed ``POST /forecast`` requests directly; hand everything else on untouched."""

    def __init__(self, app: ASGIApp, route: Any = None) -> None:
        self.app = app
        self.route = route  # FastAPI's route object, set in the scope as its router would (metrics label)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        message = await receive()  # BodyLimits hands the whole body on as one message
        if message["type"] == "http.request" and not message.get("more_body", False):
            response = await self._answer(scope, message.get("body", b""))
            if response is not None:
                scope["route"] = self.route
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(message, receive), send)

    @staticmethod
    async def _answer(scope: Scope, body: bytes) -> Any:
        state = scope["app"].state
        model = state.holder.current
        if not body or model is None or not _is_json(_content_type(scope)):
            return None
        try:
            return await answer_one(ForecastRequest.model_validate_json(body), model, state)
        except Exception:  # FastAPI's path raises it again and answers it as it always did
            return None


def _content_type(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return None


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` giving ``first`` back once, then the client's own messages."""
    held = [first]

    async def replay() -> Message:
        return held.pop() if held else await receive()

    return replay
