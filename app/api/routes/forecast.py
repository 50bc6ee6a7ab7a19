"""POST /forecast and /forecast/batch (and the benchmark-only /noop/forecast).

Answers are built here as plain data in the shape of their ``response_model`` (which documents them) and
serialised by pydantic-core in one call (``_json``), rather than returned for FastAPI to validate into
model objects first and serialise after: every value already has its type (floats from numpy's
``tolist``, strings), so the validation would only cost time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.bodies import JSONBodyRoute
from app.api.deps import ForecasterDep, SettingsDep, forecasters_of
from app.api.schemas import BatchForecastRequest, BatchForecastResponse, ForecastRequest, ForecastResponse
from app.config import Settings
from app.inference.models import forecast_per_model
from app.metrics import Metrics
from closecast.errors import InputInvalid, Loc, Problem, TooManySeries, horizon_too_large, series_too_long
from closecast.forecaster import BatchForecast, SeriesForecast

# JSONBodyRoute: bodies validated from their bytes in one pass, big batches in a child process (bodies.py)
router = APIRouter(tags=["forecast"], route_class=JSONBodyRoute)
noop_router = APIRouter(tags=["benchmark"], route_class=JSONBodyRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"description": "the body did not arrive within CLOSECAST_BODY_TIMEOUT_S"},
    413: {"description": "body larger than the route accepts, or too many series"},
    422: {"description": "invalid input; each `detail[].msg` names the field and quotes the value"},
    503: {"description": "no verified model loaded yet"},
}


def check_limits(settings: Settings, horizon: int, series: Sequence[tuple[Loc, int]]) -> None:
    """The deployment's limits (the model's window is checked by the forecaster)."""
    problems: list[Problem] = []
    if horizon > settings.max_horizon:
        problems.append(horizon_too_large(horizon, settings.max_horizon))
    problems += [series_too_long(loc, n, settings.max_closes) for loc, n in series if n > settings.max_closes]
    if problems:
        raise InputInvalid(problems)


def _json(content: dict[str, Any]) -> Response:
    """The answer as JSON, bytes for bytes what FastAPI would write for it through the response model."""
    return Response(to_json(content, inf_nan_mode="null"), media_type="application/json")


def _answer(item: SeriesForecast) -> dict[str, Any]:
    """One series' answer as plain JSON-ready data, keys in the response model's order."""
    return {
        "forecast": item.forecast,
        "intervals": {str(level): {"lower": lo, "upper": hi} for level, (lo, hi) in item.intervals.items()},
    }


def _record(request: Request, endpoint: str, result: BatchForecast, model: str) -> None:
    # The metrics come from the app state, not a dependency: each Depends costs tens of microseconds per
    # request in FastAPI's solver, more than the counting itself.
    metrics: Metrics = request.app.state.metrics
    warnings = [w.kind for item in result.items for w in item.warnings]
    metrics.observe_forecast(endpoint, result.inference_s, len(result.items), warnings, model)


@router.post("/forecast", response_model=ForecastResponse, responses=_ERRORS)
async def forecast(body: ForecastRequest, settings: SettingsDep, request: Request) -> Response:
    """Forecast the next closes of one series with a model (default: the default model), with intervals."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    names, models = await forecasters_of(request, [body.model])
    model = models[names[0]]
    features = [body.features] if body.features is not None else None
    result = model.forecast([body.closes], body.horizon, body.level, None, features)
    _record(request, "forecast", result, names[0])
    item = result.items[0]
    return _json(
        {
            **_answer(item),
            "model": names[0],
            "model_version": model.version,
            "last_close": item.last_close,
            "warnings": [w.message for w in item.warnings],
        }
    )


@router.post("/forecast/batch", response_model=BatchForecastResponse, responses=_ERRORS)
async def forecast_batch(body: BatchForecastRequest, settings: SettingsDep, request: Request) -> Response:
    """Forecast several series, one model call per step for each model named; answers in the order sent."""
    if len(body.series) > settings.max_batch_series:
        raise TooManySeries(len(body.series), settings.max_batch_series)
    locs: list[Loc] = [("body", "series", i, "closes") for i in range(len(body.series))]
    check_limits(
        settings, body.horizon, [(loc, len(s.closes)) for loc, s in zip(locs, body.series, strict=True)]
    )
    closes = [s.closes for s in body.series]
    names, models = await forecasters_of(request, [s.model or body.model for s in body.series])
    sent = [s.features for s in body.series]
    features = sent if any(f is not None for f in sent) else None
    args = (models, names, closes, body.horizon, body.level, locs, features)
    if len(closes) > settings.inline_batch_threshold:  # large batches must not stall the event loop
        items, results = await run_in_threadpool(forecast_per_model, *args)
    else:
        items, results = forecast_per_model(*args)
    for name, result in results.items():
        _record(request, "forecast_batch", result, name)
    forecasts = [
        {
            "id": s.id,
            **_answer(item),
            "model": name,
            "model_version": models[name].version,
            "last_close": item.last_close,
            "warnings": [w.message for w in item.warnings],
        }
        for s, item, name in zip(body.series, items, names, strict=True)
    ]
    return _json({"forecasts": forecasts, "model_version": forecasts[0]["model_version"]})


@noop_router.post("/noop/forecast", response_model=ForecastResponse, responses=_ERRORS)
async def noop_forecast(body: ForecastRequest, model: ForecasterDep, settings: SettingsDep) -> Response:
    """Benchmark baseline: /forecast's parsing and checks, no inference (answers the last close)."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    model.check_lengths([body.closes], [("body", "closes")])
    last = body.closes[-1]
    return _json(
        {
            "forecast": [last] * body.horizon,
            "intervals": {},
            "model": body.model or settings.default_model,
            "model_version": model.version,
            "last_close": last,
            "warnings": [],
        }
    )
