"""Request and response bodies of the HTTP API (they are the OpenAPI docs at ``/docs``).

Bounds here are the hard ceilings of the service; the deployment's own limits (``CLOSECAST_MAX_CLOSES``,
``CLOSECAST_MAX_HORIZON``, ``CLOSECAST_MAX_BATCH_SERIES``) and the model's window are checked at request
time, because they are only known once the settings are read and a model is loaded.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic_core import PydanticCustomError

from app.config import MAX_BATCH_SERIES_CEILING, MAX_CLOSES_CEILING, MAX_HORIZON_CEILING
from closecast.registry import MODEL_NAME_PATTERN, model_name_problem

_EXAMPLE_CLOSES = [
    4766.18, 4796.56, 4793.54, 4700.58, 4696.05, 4677.03, 4670.29, 4713.07, 4726.35, 4659.03,
    4662.85, 4577.11, 4532.76, 4482.73, 4397.94, 4410.13, 4356.45, 4349.93, 4326.51, 4431.85,
    4515.55, 4546.54, 4589.38, 4477.44, 4500.53, 4483.87, 4521.54, 4587.18, 4504.08, 4418.64,
]  # fmt: skip


def _examples(*payloads: Any) -> dict[str, JsonValue]:
    """OpenAPI ``examples`` for a schema (shown and runnable in /docs)."""
    return {"examples": list(payloads)}


def _whole(value: Any) -> Any:
    """JSON Schema's `integer` includes 18.0: take a whole float as the integer it is (strict fields still
    refuse 18.5, "18" and true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = BeforeValidator(_whole)

# Constraints pydantic-core checks without a Python call per close; closecast.errors words them for prices.
Price = Annotated[
    float, Field(strict=True, gt=0, allow_inf_nan=False, description="a close price, finite and > 0")
]
Closes = Annotated[
    list[Price],
    Field(
        min_length=2,
        max_length=MAX_CLOSES_CEILING,
        description="closing prices, oldest first; at least the model's window (GET /models/current: "
        "minItems 2 is only the floor, /openapi.json states the served model's window) and at most "
        "CLOSECAST_MAX_CLOSES (default 10000); only the latest window is used",
    ),
]
Horizon = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_HORIZON_CEILING,
        strict=True,
        description="steps ahead, rolled out recursively; at most CLOSECAST_MAX_HORIZON (default 30)",
    ),
    WholeNumber,  # after the bounds, so the schema states them as minimum/maximum
]
Level = Annotated[
    int, Field(ge=1, le=99, strict=True, description="central interval coverage in percent"), WholeNumber
]
FeatureName = Annotated[str, Field(pattern="^(high|low|open|volume)$")]  # typed str: Mapping keys
# >= 0 is what all four share (a volume may be 0); a price of exactly 0 is refused by the core's check
FeatureValue = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
# pydantic states the key pattern as patternProperties, which lets other keys through; say it exactly
_FEATURE_VALUES_SCHEMA = {
    "type": "array",
    "items": {"type": "number", "minimum": 0},
    "maxItems": MAX_CLOSES_CEILING,
}
FeatureMap = Annotated[
    dict[FeatureName, Annotated[list[FeatureValue], Field(max_length=MAX_CLOSES_CEILING)]],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {name: _FEATURE_VALUES_SCHEMA for name in ("high", "low", "open", "volume")},
            "additionalProperties": False,
        }
    ),
]
Dates = Annotated[
    list[Annotated[str, Field(max_length=40)]] | None,
    Field(
        default=None,
        max_length=MAX_CLOSES_CEILING,
        description="optional ISO 8601 dates or times, one per close, ascending (2024-01-05, "
        "2024-01-05T14:00:00Z): the answer then carries `forecast_dates`, one per step, stepping as the "
        "dates step (the weekdays seen, and intraday the hours of the week seen; no holiday calendar)",
    ),
]
Features = Annotated[
    FeatureMap | None,
    Field(
        default=None,
        max_length=4,
        description="OHLCV values aligned with `closes`, one per close, for a model that reads them (GET "
        '/models/current `inputs`): {"high": [...], "low": [...], "open": [...], "volume": [...]}; prices '
        "finite and > 0, volume finite and >= 0. A closes-only model refuses them. Multi-step horizons hold "
        "them at their last value",
    ),
]


def _unique_levels(levels: list[int]) -> list[int]:
    duplicates = sorted({level for level in levels if levels.count(level) > 1})
    if duplicates:
        raise PydanticCustomError(
            "level_duplicate",
            "levels must be unique; {duplicates} appears more than once",
            {"duplicates": duplicates[0]},
        )
    return levels


def _model_name(name: str) -> str:
    problem = model_name_problem(name)
    if problem is not None:
        raise PydanticCustomError("model_name_invalid", problem)
    return name


ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="a model's name (GET /models lists them): lowercase letters, digits, `._-`, at most 64; "
        "default: the default model (CLOSECAST_DEFAULT_MODEL)",
        examples=["default"],
        # Documented, not enforced by pydantic: the validator below refuses a bad name with the rule in words.
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    ),
    AfterValidator(_model_name),
]


Levels = Annotated[
    list[Level],
    Field(
        min_length=1,
        max_length=10,
        json_schema_extra={"uniqueItems": True},
        description="interval levels in percent, each 1..99, no duplicates",
    ),
    AfterValidator(_unique_levels),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = Field(
        default=None,
        description="the model to forecast with (GET /models lists them); default: the default one",
    )
    horizon: Horizon = 1
    level: Levels = Field(default_factory=lambda: [80, 95])


class ForecastRequest(_Request):
    """One series of closes to forecast."""

    model_config = ConfigDict(json_schema_extra=_examples({"closes": _EXAMPLE_CLOSES, "horizon": 5}))

    closes: Closes
    features: Features = None
    dates: Dates = None


class SeriesIn(BaseModel):
    """One series of a batch."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="your name for the series, echoed back")
    model: ModelName | None = Field(
        default=None, description="the model for this series (default: the batch's)"
    )
    closes: Closes
    features: Features = None
    dates: Dates = None


class BatchForecastRequest(_Request):
    """Several series forecast together (one ONNX Runtime call per step for the whole batch)."""

    model_config = ConfigDict(
        json_schema_extra=_examples(
            {
                "series": [
                    {"id": "SPX", "closes": _EXAMPLE_CLOSES},
                    {"id": "SPX-cents", "closes": [round(c * 100, 2) for c in _EXAMPLE_CLOSES]},
                ],
                "horizon": 3,
                "level": [80],
            }
        )
    )

    series: list[SeriesIn] = Field(
        min_length=1,
        max_length=MAX_BATCH_SERIES_CEILING,
        description="series to forecast, answered in this order; at most CLOSECAST_MAX_BATCH_SERIES "
        "(default 1000, 413 beyond)",
    )


class Interval(BaseModel):
    """Bounds of one central prediction interval, one value per step."""

    lower: list[float] = Field(description="lower bound per step")
    upper: list[float] = Field(description="upper bound per step")


def _intervals_field() -> Any:
    return Field(
        description='central prediction intervals by level ("80", "95"): one-step residual quantiles of the '
        "validation part, widened by sqrt(h) at step h"
    )


def _forecast_field() -> Any:
    return Field(description="forecast close per step, 1..horizon")


def _warnings_field() -> Any:
    return Field(description="inputs beyond what the model saw in training, in words")


def _forecast_dates_field() -> Any:
    return Field(default=None, description="the date of each step when `dates` were sent, else null")


class ForecastResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra=_examples(
            {
                "forecast": [4421.07],
                "intervals": {"80": {"lower": [4364.2], "upper": [4476.3]}},
                "model": "default",
                "model_version": "20261123T060000Z-5e7a1c2d",
                "last_close": 4418.64,
                "warnings": [],
            }
        )
    )

    forecast: list[float] = _forecast_field()
    intervals: dict[str, Interval] = _intervals_field()
    model: str = Field(description="the model that answered")
    model_version: str = Field(description="version of the bundle that answered")
    last_close: float = Field(description="the last close sent: forecasts are relative to it")
    warnings: list[str] = _warnings_field()
    forecast_dates: list[str] | None = _forecast_dates_field()


class SeriesForecastOut(BaseModel):
    id: str = Field(description="the id sent")
    forecast: list[float] = _forecast_field()
    intervals: dict[str, Interval] = _intervals_field()
    model: str = Field(description="the model that answered this series")
    model_version: str = Field(description="version of the bundle that answered this series")
    last_close: float = Field(description="the last close of this series")
    warnings: list[str] = _warnings_field()
    forecast_dates: list[str] | None = _forecast_dates_field()


class BatchForecastResponse(BaseModel):
    forecasts: list[SeriesForecastOut] = Field(description="one per series, in the order sent")
    model_version: str = Field(
        description="version of the default or top-level model (deprecated: read each item's own)"
    )


class Status(BaseModel):
    status: str = Field(description='"ok" or "ready"')
    model: str | None = Field(default=None, description="the default model (readiness is about it)")
    model_version: str | None = Field(default=None, description="version served, once loaded")


class Readiness(Status):
    degraded: list[str] = Field(
        default_factory=list,
        description="parts that do not work now, each `task: reason` (e.g. a locked job store); "
        "forecasts are still served",
    )
