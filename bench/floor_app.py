"""The floor: a bare FastAPI app with closecast's request and response schemas and no project code.

    uvicorn bench.floor_app:app --loop uvloop --http httptools --no-access-log

What a Python web service on this stack costs before it does anything: uvicorn (uvloop, httptools),
FastAPI's routing, Pydantic parsing the same ``/forecast`` and ``/forecast/batch`` bodies with the same
bounds, and an answer of the same shape (the last close as forecast and bounds) validated and serialised
through the ``response_model``, written the way FastAPI's tutorial writes an endpoint. ``bench/serve.py``
reports every closecast endpoint as a ratio to it. It imports nothing from ``app`` or ``closecast`` on
purpose: the floor must not move when they do.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

Price = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Closes = Annotated[list[Price], Field(min_length=2, max_length=100_000)]
Horizon = Annotated[int, Field(ge=1, le=365, strict=True)]
Level = Annotated[int, Field(ge=1, le=99, strict=True)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon: Horizon = 1
    level: Annotated[list[Level], Field(min_length=1, max_length=10)] = Field(
        default_factory=lambda: [80, 95]
    )


class ForecastRequest(_Request):
    closes: Closes


class SeriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    closes: Closes


class BatchForecastRequest(_Request):
    series: list[SeriesIn] = Field(min_length=1, max_length=100_000)


class Interval(BaseModel):
    lower: list[float]
    upper: list[float]


class ForecastResponse(BaseModel):
    forecast: list[float]
    intervals: dict[str, Interval]
    model_version: str
    last_close: float
    warnings: list[str]


class SeriesForecastOut(BaseModel):
    id: str
    forecast: list[float]
    intervals: dict[str, Interval]
    last_close: float
    warnings: list[str]


class BatchForecastResponse(BaseModel):
    forecasts: list[SeriesForecastOut]
    model_version: str


app = FastAPI(title="floor")


def _answer(closes: list[float], horizon: int, levels: list[int]) -> dict[str, Any]:
    last = closes[-1]
    path = [last] * horizon
    return {
        "forecast": path,
        "intervals": {str(level): {"lower": path, "upper": path} for level in levels},
        "last_close": last,
        "warnings": [],
    }


@app.post("/forecast", response_model=ForecastResponse)
async def forecast(body: ForecastRequest) -> Any:
    return {**_answer(body.closes, body.horizon, body.level), "model_version": "floor"}


@app.post("/forecast/batch", response_model=BatchForecastResponse)
async def forecast_batch(body: BatchForecastRequest) -> Any:
    forecasts = [{"id": s.id, **_answer(s.closes, body.horizon, body.level)} for s in body.series]
    return {"forecasts": forecasts, "model_version": "floor"}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
