"""POST /forecast and /forecast/batch (and the benchmark-only /noop/forecast)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import ForecasterDep, MetricsDep, SettingsDep
from app.config import Settings
from app.errors import InputInvalid, Loc, Problem, TooManySeries, horizon_too_large, series_too_long
from app.inference.forecaster import BatchForecast, SeriesForecast
from app.metrics import Metrics
from app.schemas import BatchForecastRequest, BatchForecastResponse, ForecastRequest, ForecastResponse

router = APIRouter(tags=["forecast"])
noop_router = APIRouter(tags=["benchmark"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "body larger than CLOSECAST_MAX_BODY_BYTES or too many series"},
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


def _answer(item: SeriesForecast) -> dict[str, Any]:
    """One series' answer as plain JSON-ready data; FastAPI validates it against the response model in one
    pydantic-core call, far cheaper than building a model object per series and interval."""
    return {
        "forecast": item.forecast,
        "intervals": {str(level): {"lower": lo, "upper": hi} for level, (lo, hi) in item.intervals.items()},
        "last_close": item.last_close,
        "warnings": [w.message for w in item.warnings],
    }


def _record(metrics: Metrics, endpoint: str, result: BatchForecast) -> None:
    metrics.inference.labels(endpoint).observe(result.inference_s)
    metrics.batch_series.labels(endpoint).observe(len(result.items))
    for item in result.items:
        for warning in item.warnings:
            metrics.input_warnings.labels(warning.kind).inc()


@router.post("/forecast", response_model=ForecastResponse, responses=_ERRORS)
async def forecast(
    body: ForecastRequest, model: ForecasterDep, settings: SettingsDep, metrics: MetricsDep
) -> dict[str, Any]:
    """Forecast the next closes of one series, with prediction intervals."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    result = model.forecast([body.closes], body.horizon, body.level)
    _record(metrics, "forecast", result)
    return {**_answer(result.items[0]), "model_version": model.version}


@router.post("/forecast/batch", response_model=BatchForecastResponse, responses=_ERRORS)
async def forecast_batch(
    body: BatchForecastRequest, model: ForecasterDep, settings: SettingsDep, metrics: MetricsDep
) -> dict[str, Any]:
    """Forecast several series in one model call per step; answers come in the order sent."""
    if len(body.series) > settings.max_batch_series:
        raise TooManySeries(len(body.series), settings.max_batch_series)
    locs: list[Loc] = [("body", "series", i, "closes") for i in range(len(body.series))]
    check_limits(
        settings, body.horizon, [(loc, len(s.closes)) for loc, s in zip(locs, body.series, strict=True)]
    )
    closes = [s.closes for s in body.series]
    if len(closes) > settings.inline_batch_threshold:  # large batches must not stall the event loop
        result = await run_in_threadpool(model.forecast, closes, body.horizon, body.level, locs)
    else:
        result = model.forecast(closes, body.horizon, body.level, locs)
    _record(metrics, "forecast_batch", result)
    return {
        "forecasts": [
            {"id": s.id, **_answer(item)} for s, item in zip(body.series, result.items, strict=True)
        ],
        "model_version": model.version,
    }


@noop_router.post("/noop/forecast", response_model=ForecastResponse, responses=_ERRORS)
async def noop_forecast(body: ForecastRequest, model: ForecasterDep, settings: SettingsDep) -> dict[str, Any]:
    """Benchmark baseline: /forecast's parsing and checks, no inference (answers the last close)."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    model.check_lengths([body.closes], [("body", "closes")])
    last = body.closes[-1]
    return {
        "forecast": [last] * body.horizon,
        "intervals": {},
        "model_version": model.version,
        "last_close": last,
        "warnings": [],
    }
