"""The Open Inference Protocol (KServe v2 REST, as Triton, KServe and MLServer speak it) over closecast's
models: health, server and model metadata, and ``infer`` with JSON or binary tensors.

``infer`` answers N series of T closes (``closes`` ``[N, T]``, FP64 or FP32) exactly as ``/forecast/batch``
answers the same N series: the same checks, the same forecaster call (``forecast_per_model``), the same
metrics, the same named models (``default`` is the default model). Errors leave in the protocol's shape
``{"error": "..."}``: 400 for input the protocol or the model refuses, and otherwise the status ``/forecast``
gives the same error (404 unknown model or version, 413, 503). The routes are as open as ``/forecast``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.responses import Response

from app.api.dates import forecast_dates
from app.api.errors import RETRY_AFTER, status_of, without_paths
from app.api.oip import (
    DATATYPES,
    DEFAULT_LEVELS,
    FEATURES,
    InferRequest,
    ProtocolInvalid,
    encode_infer,
    output_names,
    parse_infer,
)
from app.api.routes.forecast import _record, check_limits
from app.config import Settings
from app.inference.models import LoadedModels, forecast_per_model
from app.inference.pinned import PinnedVersions
from app.jobs.errors import VersionNotFound
from closecast import registry
from closecast.errors import ClosecastError, InputInvalid, Loc, ModelNotReady, Problem, TooManySeries
from closecast.forecaster import Forecaster

OIP_INFER = "/v2/models/{model}/infer"  # the route the raw ASGI path (fastpath.py) answers too
DEFAULT_ALIAS = "default"  # a path's model name for the default model, whatever CLOSECAST_DEFAULT_MODEL is


def error_response(exc: ClosecastError, state: State) -> Response:
    """A domain error in the protocol's shape: 400 for input problems, else ``/forecast``'s status."""
    status = 400 if isinstance(exc, InputInvalid | ProtocolInvalid) else status_of(exc)
    headers = {"Retry-After": RETRY_AFTER[status]} if status in RETRY_AFTER else None
    body = to_json({"error": without_paths(exc.message, state.settings.model_dir)})
    return Response(body, status, headers=headers, media_type="application/json")


class ProtocolRoute(APIRoute):
    """A route whose domain errors answer ``{"error": message}`` (the protocol's shape, not ``detail``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ClosecastError as exc:
                return error_response(exc, request.app.state)

        return guarded


router = APIRouter(tags=["inference protocol"], route_class=ProtocolRoute)


class ProtocolError(BaseModel):
    """The protocol's error answer."""

    error: str = Field(description="what went wrong and what to do")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "the request or its input is refused; the message names the tensor or parameter",
        404: "no model (or version) of that name; the message lists known ones",
        409: "the version asked for does not verify",
        503: "no verified model loaded yet (`Retry-After`)",
    }
    return {status: {"model": ProtocolError, "description": words[status]} for status in statuses}


def _json(content: dict[str, Any], status: int = 200) -> Response:
    return Response(to_json(content), status, media_type="application/json")


async def resolve(state: State, model: str, version: str | None) -> tuple[str, Forecaster]:
    """The path's model (``default``: the default model) and version (None: the one it serves), loaded
    off the event loop when cold; ``ModelNotFound`` / ``VersionNotFound`` (404) otherwise."""
    models: LoadedModels = state.models
    name = models.default_name if model == DEFAULT_ALIAS else model
    served = await models.aforecaster_of(name)
    if version is None or version == served.version:
        return name, served
    pinned: PinnedVersions = state.pinned_versions
    if not pinned.exists(name, version):
        raise VersionNotFound(version, name)
    return name, await anyio.to_thread.run_sync(pinned.get, name, version)


# --- health and metadata -----------------------------------------------------------------------------------


@router.get("/v2")
async def server_metadata(request: Request) -> Response:
    """Server metadata: name, version and the protocol extensions spoken (binary tensor data)."""
    return _json({"name": "closecast", "version": request.app.version, "extensions": ["binary_tensor_data"]})


@router.get("/v2/health/live")
async def live() -> Response:
    """Alive: the process answers (always 200)."""
    return _json({"live": True})


@router.get("/v2/health/ready", responses=_errors(503))
async def ready(request: Request) -> Response:
    """Ready: the default model is verified and serving (503 before)."""
    if request.app.state.models.default.current is None:
        raise ModelNotReady()
    return _json({"ready": True})


def metadata(name: str, model: Forecaster, versions: list[str]) -> dict[str, Any]:
    """A model's metadata: closes and each feature it reads as ``[-1, -1]`` (N series of any T >= its
    window), and the outputs of the default levels; ``parameters`` say the window and the defaults."""
    tensor = [{"datatype": "FP64", "shape": [-1, -1]}]
    return {
        "name": name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": n, **tensor[0]} for n in ("closes", *model.features)],
        "outputs": [{"name": n, **tensor[0]} for n in output_names(DEFAULT_LEVELS)],
        "parameters": {
            "window": model.window,
            "served_version": model.version,
            "input_datatypes": ",".join(DATATYPES),
            "horizon": 1,
            "levels": ",".join(map(str, DEFAULT_LEVELS)),
        },
    }


@router.get("/v2/models/{model}", responses=_errors(404, 409, 503))
@router.get("/v2/models/{model}/versions/{version}", responses=_errors(404, 409, 503))
async def model_metadata(model: str, request: Request, version: str | None = None) -> Response:
    """A model's metadata (inputs, outputs, versions); the model is loaded when cold."""
    state = request.app.state
    name, served = await resolve(state, model, version)
    models: LoadedModels = state.models
    versions = await anyio.to_thread.run_sync(registry.list_versions, models.model_dir(name))
    return _json(metadata(name, served, versions))


@router.get("/v2/models/{model}/config", responses=_errors(404, 409, 503))
@router.get("/v2/models/{model}/versions/{version}/config", responses=_errors(404, 409, 503))
async def model_config(model: str, request: Request, version: str | None = None) -> Response:
    """Triton's model configuration extension, which its tools (perf_analyzer) read before they send."""
    name, served = await resolve(request.app.state, model, version)
    tensor = {"data_type": "TYPE_FP64", "dims": [-1, -1]}
    return _json(
        {
            "name": name,
            "platform": "onnxruntime_onnx",
            "max_batch_size": 0,  # the batch is the tensor's first dimension, N series
            "input": [{"name": n, **tensor} for n in ("closes", *served.features)],
            "output": [{"name": n, **tensor} for n in output_names(DEFAULT_LEVELS)],
        }
    )


@router.get("/v2/models/{model}/ready", responses=_errors(404, 409, 503))
@router.get("/v2/models/{model}/versions/{version}/ready", responses=_errors(404, 409, 503))
async def model_ready(model: str, request: Request, version: str | None = None) -> Response:
    """Whether a model (version) can serve: 200 once loaded (it is loaded when cold), 404 unknown."""
    name, _ = await resolve(request.app.state, model, version)
    return _json({"name": name, "ready": True})


# --- infer -------------------------------------------------------------------------------------------------


# Not in OpenAPI: the body is the protocol's JSON header followed by raw tensor bytes, framed by a header
# (Inference-Header-Content-Length), which OpenAPI cannot state; the protocol itself specifies it.
@router.post(OIP_INFER, include_in_schema=False)
@router.post("/v2/models/{model}/versions/{version}/infer", include_in_schema=False)
async def infer(model: str, request: Request, version: str | None = None) -> Response:
    """Forecast N series of T closes (``closes`` [N, T]); JSON or binary tensors in and out."""
    state = request.app.state
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    if len(body) > state.settings.big_body_bytes:  # a big JSON header must not stall the event loop
        parsed = await run_in_threadpool(parse_infer, body, header_length)
    else:
        parsed = parse_infer(body, header_length)
    name, forecaster = await resolve(state, model, version)
    return await answer_infer(parsed, state, name, forecaster)


async def answer_infer(parsed: InferRequest, state: State, name: str, model: Forecaster) -> Response:
    """``infer``'s whole answer with the model resolved: the route's, and the raw ASGI path's."""
    settings: Settings = state.settings
    closes = parsed.closes
    count, length = closes.shape
    if count > settings.max_batch_series:
        raise TooManySeries(count, settings.max_batch_series)
    check_limits(settings, parsed.horizon, [(("body", "closes"), length)])
    if length < model.window:  # one message for the whole tensor, not one per series
        raise InputInvalid([_too_short(closes.shape, model.window)])
    _check_feature_names(parsed, model, name)
    steps = None
    if parsed.dates is not None:  # one calendar for the whole tensor: checked against its first row
        steps = forecast_dates(closes[0].tolist(), parsed.dates, parsed.horizon, ("parameters", "dates"))
    locs: list[Loc] = [("body", "series", i, "closes") for i in range(count)]
    args = (
        {name: model},
        [name] * count,
        list(closes),  # N row views of the one array (the core's per-series form; no copy)
        parsed.horizon,
        parsed.levels,
        locs,
        parsed.features(),
    )
    if count > settings.inline_batch_threshold:  # large batches must not stall the event loop
        table, results = await run_in_threadpool(forecast_per_model, *args)
    else:
        table, results = forecast_per_model(*args)
    _record(state, "oip_infer", results[name], name)
    warnings = [(i, w.message) for i, series in enumerate(table.warnings) for w in series]
    body, headers = encode_infer(parsed, table.array(), name, model.version, warnings, steps)
    return Response(body, headers=headers)


def _too_short(shape: tuple[int, ...], window: int) -> Problem:
    return Problem(
        ("body", "closes"),
        f"closes has shape {list(shape)}: {shape[1]} closes per series but the model needs at least "
        f"{window} (its window); send [N, T] with T >= {window}",
        "series_too_short",
        shape[1],
    )


def _check_feature_names(parsed: InferRequest, model: Forecaster, name: str) -> None:
    """Every feature the model reads is sent and none it does not read (one message, not one per series)."""
    sent = [n for n in FEATURES if n in parsed.inputs]
    if sent != [n for n in FEATURES if n in model.features]:
        reads = ", ".join(("closes", *model.features))
        raise ProtocolInvalid(
            f"inputs are {', '.join(('closes', *sent))} but model {name!r} ({model.version}) reads {reads}; "
            f"send exactly those (GET /v2/models/{name})"
        )
