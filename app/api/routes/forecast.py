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
from starlette.datastructures import State
from starlette.responses import Response

from app.api.bodies import JSONBodyRoute
from app.api.dates import forecast_dates
from app.api.deps import ForecasterDep, SettingsDep, forecasters_of
from app.api.responses import errors
from app.api.schemas import BatchForecastRequest, BatchForecastResponse, ForecastRequest, ForecastResponse
from app.config import Settings
from app.inference.batcher import Batcher
from app.inference.models import forecast_per_model
from app.metrics import Metrics
from closecast.errors import InputInvalid, Loc, Problem, TooManySeries, horizon_too_large, series_too_long
from closecast.forecaster import Forecaster
from closecast.results import BatchForecast, PriceRows, SeriesForecast

# JSONBodyRoute: bodies validated from their bytes in one pass, big batches in a child process (bodies.py)
router = APIRouter(tags=["forecast"], route_class=JSONBodyRoute)
noop_router = APIRouter(tags=["benchmark"], route_class=JSONBodyRoute)

_ERRORS = errors(
    404,
    408,
    413,
    422,
    503,
    words={
        404: "no model of that name; the message lists known ones",
        408: "the body did not arrive within CLOSECAST_BODY_TIMEOUT_S",
        413: "body larger than the route accepts, or too many series",
        503: "no verified model loaded yet",
    },
)


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


def _record(state: State, endpoint: str, result: BatchForecast | PriceRows, model: str) -> None:
    # The metrics come from the app state, not a dependency: each Depends costs tens of microseconds per
    # request in FastAPI's solver, more than the counting itself.
    metrics: Metrics = state.metrics
    if isinstance(result, PriceRows):
        per_series = result.warnings
    else:
        per_series = [item.warnings for item in result.items]
    warnings = [w.kind for series in per_series for w in series]
    metrics.observe_forecast(endpoint, result.inference_s, len(per_series), warnings, model)


async def answer_one(body: ForecastRequest, model: Forecaster, state: State, name: str) -> Response:
    """``/forecast``'s whole answer with the model ``name`` resolved to: the route's, and the same for the
    raw ASGI path (``fastpath.py``), which resolves only models already in memory."""
    check_limits(state.settings, body.horizon, [(("body", "closes"), len(body.closes))])
    locs: list[Loc] = [("body", "closes")]
    model.check_lengths([body.closes], locs)  # checked before joining a batch they would fail
    model.check_features([body.closes], [body.features] if body.features is not None else None, locs)
    dates, loc = body.dates, ("body", "dates")
    steps = None if dates is None else forecast_dates(body.closes, dates, body.horizon, loc)
    batcher: Batcher = state.batcher
    result = await batcher.forecast(model, body.closes, body.horizon, body.level, body.features)
    _record(state, "forecast", result, name)
    item = result.items[0]
    return _json(
        {
            **_answer(item),
            "model": name,
            "model_version": model.version,
            "last_close": item.last_close,
            "warnings": [w.message for w in item.warnings],
            "forecast_dates": steps,
        }
    )


@router.post("/forecast", response_model=ForecastResponse, responses=_ERRORS)
async def forecast(body: ForecastRequest, request: Request) -> Response:
    """Forecast the next closes of one series with a model (default: the default model), with intervals."""
    names, models = await forecasters_of(request, [body.model])
    return await answer_one(body, models[names[0]], request.app.state, names[0])


async def answer_batch(
    body: BatchForecastRequest, state: State, resolved: tuple[list[str], dict[str, Forecaster]]
) -> Response:
    """``/forecast/batch``'s whole answer (``resolved``: each series' model name, and the models by name):
    the route's, and the same for the raw ASGI path (``fastpath.py``)."""
    names, models = resolved
    settings: Settings = state.settings
    if len(body.series) > settings.max_batch_series:
        raise TooManySeries(len(body.series), settings.max_batch_series)
    locs: list[Loc] = [("body", "series", i, "closes") for i in range(len(body.series))]
    check_limits(
        settings, body.horizon, [(loc, len(s.closes)) for loc, s in zip(locs, body.series, strict=True)]
    )
    steps = {
        i: forecast_dates(s.closes, s.dates, body.horizon, ("body", "series", i, "dates"))
        for i, s in enumerate(body.series)
        if s.dates is not None
    }
    closes = [s.closes for s in body.series]
    sent = [s.features for s in body.series]
    args = (models, names, closes, body.horizon, body.level, locs, sent)
    if len(closes) > settings.inline_batch_threshold:  # large batches must not stall the event loop
        table, results = await run_in_threadpool(forecast_per_model, *args)
    else:
        table, results = forecast_per_model(*args)
    for name, result in results.items():
        _record(state, "forecast_batch", result, name)
    answers = _batch_answers(body, names, models, table)
    for i, dates in steps.items():
        answers[i]["forecast_dates"] = dates
    return _json({"forecasts": answers, "model_version": answers[0]["model_version"]})


def _batch_answers(
    body: BatchForecastRequest, names: list[str], models: dict[str, Forecaster], table: PriceRows
) -> list[dict[str, Any]]:
    """Each series' answer straight from the batch's price table, keys in the response model's order: one
    pass over the series, no object per series in between."""
    keys = [(str(level), k) for k, level in table.levels]  # once per request, not per series
    versions = {name: model.version for name, model in models.items()}
    series = zip(body.series, names, table.rows, table.last_closes, table.warnings, strict=True)
    return [
        {
            "id": s.id,
            "forecast": row[0],
            "intervals": {key: {"lower": row[k], "upper": row[k + 1]} for key, k in keys},
            "model": name,
            "model_version": versions[name],
            "last_close": last,
            "warnings": [w.message for w in warnings],
            "forecast_dates": None,
        }
        for s, name, row, last, warnings in series
    ]


@router.post("/forecast/batch", response_model=BatchForecastResponse, responses=_ERRORS)
async def forecast_batch(body: BatchForecastRequest, request: Request) -> Response:
    """Forecast several series, one model call per step for each model named; answers in the order sent."""
    resolved = await forecasters_of(request, [s.model or body.model for s in body.series])
    return await answer_batch(body, request.app.state, resolved)


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
            "forecast_dates": None,
        }
    )
