"""Typed results of the client's calls, made from the server's JSON answers (the raw answer is kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Interval:
    """One central prediction interval: a bound per forecast step."""

    lower: list[float]
    upper: list[float]


@dataclass(frozen=True)
class ForecastResult:
    """One series' forecast: ``forecast[h-1]`` is the close ``h`` steps ahead; ``intervals`` by level."""

    forecast: list[float]
    intervals: dict[int, Interval]
    model: str
    model_version: str
    last_close: float
    warnings: list[str]
    forecast_dates: list[str] | None = None
    id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> ForecastResult:
        return cls(
            forecast=list(body["forecast"]),
            intervals={
                int(level): Interval(list(bounds["lower"]), list(bounds["upper"]))
                for level, bounds in body.get("intervals", {}).items()
            },
            model=body.get("model", "default"),
            model_version=body["model_version"],
            last_close=body["last_close"],
            warnings=list(body.get("warnings", [])),
            forecast_dates=body.get("forecast_dates"),
            id=body.get("id"),
            raw=body,
        )


@dataclass(frozen=True)
class BacktestResult:
    """A walk-forward backtest: ``folds`` and ``overall`` as the server scored them."""

    folds: list[dict[str, Any]]
    overall: dict[str, Any]
    model: str
    model_version: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> BacktestResult:
        return cls(body["folds"], body["overall"], body["model"], body["model_version"], body)


FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    """A training job as ``GET /train/{id}`` shows it; ``result`` is set once it succeeded."""

    job_id: str
    status: str
    model: str | None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Job:
        return cls(
            job_id=body["job_id"],
            status=body["status"],
            model=body.get("model"),
            progress=body.get("progress"),
            result=body.get("result"),
            error=body.get("error"),
            raw=body,
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def version(self) -> str | None:
        """The version the job registered (None until it succeeded)."""
        return self.result.get("version") if self.result else None

    @property
    def promoted(self) -> bool:
        return bool(self.result and self.result.get("promoted"))
