"""POST /forecast and /forecast/batch (and the benchmark-only /noop/forecast)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import ForecasterDep, MetricsDep, SettingsDep
from app.config import Settings
from app.errors import InputInvalid, Loc, Problem, TooManySeries, horizon_too_large, series_too_long
from app.inference.forecaster import BatchForecast, SeriesForecast
from app.metrics import Metrics
from app.schemas import (
    BatchForecastRequest,
    BatchForecastResponse,
    ForecastRequest,
    ForecastResponse,
    Interval,
    SeriesForecastOut,
)

router = APIRouter(tags=["forecast"])
noop_router = APIRouter(tags=["benchmark"])

_ERRORS = {
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


def _intervals(item: SeriesForecast) -> dict[str, Interval]:
    return {str(level): Interval(lower=lo.tolist(), upper=hi.tolist()) for level, (lo, hi) in item.intervals.items()}


def _record(metrics: Metrics, endpoint: str, result: BatchForecast) -> None:
    metrics.inference.labels(endpoint).observe(result.inference_s)
    metrics.batch_series.labels(endpoint).observe(len(result.items))
    for item in result.items:
        for warning in item.warnings:
            metrics.input_warnings.labels(warning.kind).inc()


@router.post("/forecast", responses=_ERRORS)
async def forecast(
    body: ForecastRequest, model: ForecasterDep, settings: SettingsDep, metrics: MetricsDep
) -> ForecastResponse:
    """Forecast the next closes of one series, with prediction intervals."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    result = model.forecast([np.asarray(body.closes)], body.horizon, body.level)
    _record(metrics, "forecast", result)
    item = result.items[0]
    return ForecastResponse(
        forecast=item.forecast.tolist(),
        intervals=_intervals(item),
        model_version=model.version,
        last_close=item.last_close,
        warnings=[w.message for w in item.warnings],
    )


@router.post("/forecast/batch", responses=_ERRORS)
async def forecast_batch(
    body: BatchForecastRequest, model: ForecasterDep, settings: SettingsDep, metrics: MetricsDep
) -> BatchForecastResponse:
    """Forecast several series in one model call per step; answers come in the order sent."""
    if len(body.series) > settings.max_batch_series:
        raise TooManySeries(len(body.series), settings.max_batch_series)
    locs: list[Loc] = [("body", "series", i, "closes") for i in range(len(body.series))]
    check_limits(settings, body.horizon, [(loc, len(s.closes)) for loc, s in zip(locs, body.series, strict=True)])
    arrays = [np.asarray(s.closes) for s in body.series]
    if len(arrays) > settings.inline_batch_threshold:  # large batches must not stall the event loop
        result = await run_in_threadpool(model.forecast, arrays, body.horizon, body.level, locs)
    else:
        result = model.forecast(arrays, body.horizon, body.level, locs)
    _record(metrics, "forecast_batch", result)
    return BatchForecastResponse(
        forecasts=[
            SeriesForecastOut(
                id=s.id,
                forecast=item.forecast.tolist(),
                intervals=_intervals(item),
                last_close=item.last_close,
                warnings=[w.message for w in item.warnings],
            )
            for s, item in zip(body.series, result.items, strict=True)
        ],
        model_version=model.version,
    )


@noop_router.post("/noop/forecast", responses=_ERRORS)
async def noop_forecast(body: ForecastRequest, model: ForecasterDep, settings: SettingsDep) -> ForecastResponse:
    """Benchmark baseline: /forecast's parsing and checks, no inference (answers the last close)."""
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    model.check_lengths([body.closes], [("body", "closes")])
    last = body.closes[-1]
    return ForecastResponse(
        forecast=[last] * body.horizon, intervals={}, model_version=model.version, last_close=last, warnings=[]
    )
