"""``POST /forecast`` and ``/forecast/batch`` answered without FastAPI's request machinery, same bytes.

FastAPI's routing, dependency solving, exception layers and response wrapping cost about as much per
request as a one-series forecast (py-spy: README "Measured speed"). This ASGI layer, inside ``BodyLimits``
(the body is already whole) and ``RequestMetrics`` (still counted, under the route's template), answers a
well-formed request itself: the body model's ``model_validate_json`` on the bytes, then the route's own
``answer_one`` / ``answer_batch``. Anything else (another path, a body that does not validate, a limit
exceeded, no model yet, a batch big enough for the parsing child, an error of any kind before the answer
starts) goes on to FastAPI with the body replayed, so every error, 422 text and header stays exactly
FastAPI's, and the OpenAPI docs still come from the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import State
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.bodies import _is_json
from app.api.routes.forecast import answer_batch, answer_one
from app.api.schemas import BatchForecastRequest, ForecastRequest
from closecast.forecaster import Forecaster

Answer = Callable[[Any, Forecaster, State], Awaitable[Response]]
ROUTES: dict[str, tuple[type[BaseModel], Answer]] = {
    "/forecast": (ForecastRequest, answer_one),
    "/forecast/batch": (BatchForecastRequest, answer_batch),
}


class ForecastFastPath:
    """Answer well-formed forecast requests directly; hand everything else on untouched."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        # FastAPI's route objects, set in the scope as its router would (the metrics' route label)
        self.routes = {path: r for r in routes if (path := getattr(r, "path", None)) in ROUTES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        route = ROUTES.get(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        message = await receive()  # BodyLimits hands the whole body on as one message
        if message["type"] == "http.request" and not message.get("more_body", False):
            response = await _answer(scope, message.get("body", b""), *route)
            if response is not None:
                scope["route"] = self.routes.get(scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(message, receive), send)


async def _answer(scope: Scope, body: bytes, model_class: type[BaseModel], answer: Answer) -> Response | None:
    state = scope["app"].state
    model = state.holder.current
    if not body or model is None or len(body) > state.settings.big_body_bytes:
        return None
    if not _is_json(_content_type(scope)):
        return None
    try:
        return await answer(model_class.model_validate_json(body), model, state)
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
