"""``POST /forecast`` and ``/forecast/batch`` answered without FastAPI's request machinery, same bytes.

FastAPI's routing, dependency solving, exception layers and response wrapping cost about as much per
request as a one-series forecast (py-spy: docs/performance.md). This ASGI layer, inside ``BodyLimits``
(the body is already whole) and ``RequestMetrics`` (still counted, under the route's template), answers a
well-formed request itself: the body model's ``model_validate_json`` on the bytes, then the route's own
``answer_one`` / ``answer_batch`` with the models the body names (the default one when it names none), if
every one of them is in memory. Anything else (another path, a body that does not validate, a model that is
unknown or not loaded yet, a limit exceeded, no model yet, a batch big enough for the parsing child, an
error of any kind before the answer starts) goes on to FastAPI with the body replayed, so every error, 422
and 404 text and header stays exactly FastAPI's, a cold model is loaded off the event loop by the route as
always, and the OpenAPI docs still come from the routes.

The inference protocol's ``POST /v2/models/{model}/infer`` is answered the same way (``routes/oip.py``'s
``answer_infer``, for a model in memory; a version's path always goes to the route).
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
from app.api.oip import parse_infer
from app.api.routes.forecast import answer_batch, answer_one
from app.api.routes.oip import DEFAULT_ALIAS, OIP_INFER, answer_infer
from app.api.schemas import BatchForecastRequest, ForecastRequest
from app.inference.models import LoadedModels
from closecast.forecaster import Forecaster

Answer = Callable[[Any, State], Awaitable[Response | None]]


def _loaded(state: State, names: list[str | None]) -> tuple[list[str], dict[str, Forecaster]] | None:
    """The models ``names`` ask for (``None``: the default one) as the route's ``forecasters_of`` resolves
    them, if all are in memory; else None (the route loads a cold model or answers 404/503)."""
    models: LoadedModels = state.models
    resolved = [name or models.default_name for name in names]
    found: dict[str, Forecaster] = {}
    for name in dict.fromkeys(resolved):
        if (model := models.loaded(name)) is None:
            return None
        found[name] = model
    return resolved, found


async def _one(body: ForecastRequest, state: State) -> Response | None:
    resolved = _loaded(state, [body.model])
    if resolved is None:
        return None
    (name,), models = resolved
    return await answer_one(body, models[name], state, name)


async def _batch(body: BatchForecastRequest, state: State) -> Response | None:
    resolved = _loaded(state, [s.model or body.model for s in body.series])
    return None if resolved is None else await answer_batch(body, state, resolved)


ROUTES: dict[str, tuple[type[BaseModel], Answer]] = {
    "/forecast": (ForecastRequest, _one),
    "/forecast/batch": (BatchForecastRequest, _batch),
}


class ForecastFastPath:
    """Answer well-formed forecast requests directly; hand everything else on untouched."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        # FastAPI's route objects, set in the scope as its router would (the metrics' route label)
        self.routes = {path: r for r in routes if (path := getattr(r, "path", None)) in (*ROUTES, OIP_INFER)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        route = ROUTES.get(scope["path"])
        if route is None:
            oip_model = _oip_model(scope["path"])
            if oip_model is None:
                await self.app(scope, receive, send)
            else:
                await self._infer(oip_model, scope, receive, send)
            return
        message = await receive()  # BodyLimits hands the whole body on as one message
        if message["type"] == "http.request" and not message.get("more_body", False):
            response = await _answer(scope, message.get("body", b""), *route)
            if response is not None:
                scope["route"] = self.routes.get(scope["path"])
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(message, receive), send)

    async def _infer(self, model: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The inference protocol's infer, as its route answers it, for a model in memory."""
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            response = await _answer_infer(scope, message.get("body", b""), model)
            if response is not None:
                scope["route"] = self.routes.get(OIP_INFER)
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(message, receive), send)


def _oip_model(path: str) -> str | None:
    """The model of ``/v2/models/{model}/infer`` (not a version's path: the route resolves those)."""
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    model = path[len("/v2/models/") : -len("/infer")]
    return model if model and "/" not in model else None


async def _answer_infer(scope: Scope, body: bytes, model: str) -> Response | None:
    state = scope["app"].state
    if not body or len(body) > state.settings.big_body_bytes:
        return None
    models: LoadedModels = state.models
    name = models.default_name if model == DEFAULT_ALIAS else model
    try:
        forecaster = models.loaded(name)
        if forecaster is None:
            return None
        return await answer_infer(
            parse_infer(body, _header(scope, b"inference-header-content-length")), state, name, forecaster
        )
    except Exception:  # FastAPI's path raises it again and answers it in the protocol's shape
        return None


async def _answer(scope: Scope, body: bytes, model_class: type[BaseModel], answer: Answer) -> Response | None:
    state = scope["app"].state
    if not body or len(body) > state.settings.big_body_bytes or not _is_json(_content_type(scope)):
        return None
    try:
        return await answer(model_class.model_validate_json(body), state)
    except Exception:  # FastAPI's path raises it again and answers it as it always did
        return None


def _content_type(scope: Scope) -> str | None:
    return _header(scope, b"content-type")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` giving ``first`` back once, then the client's own messages."""
    held = [first]

    async def replay() -> Message:
        return held.pop() if held else await receive()

    return replay
