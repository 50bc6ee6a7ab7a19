"""Request and response bodies of ``POST /backtest`` (shown in the OpenAPI docs at ``/docs``).

Bounds here are the hard ceilings; the deployment's limits (``CLOSECAST_MAX_CLOSES``,
``CLOSECAST_MAX_HORIZON``, ``CLOSECAST_MAX_BACKTEST_FOLDS``) and what the model's window needs are checked at
request time.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas import Closes, Features, Horizon, ModelName, WholeNumber
from app.config import MAX_BACKTEST_FOLDS_CEILING

Folds = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_BACKTEST_FOLDS_CEILING,
        strict=True,
        description="expanding-window folds; at most CLOSECAST_MAX_BACKTEST_FOLDS (default 20)",
    ),
    WholeNumber,  # 6.0 is the integer 6, as in JSON Schema
]


class BacktestRequest(BaseModel):
    """A series to score the served model on, walk-forward: no retraining, every origin of a fold at once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"closes": [100.0 + i % 7 for i in range(200)], "folds": 3}]},
    )

    model: ModelName | None = Field(
        default=None, description="the model to score (GET /models lists them); default: the default model"
    )
    closes: Closes
    features: Features = None
    dates: list[Annotated[str, Field(max_length=40)]] | None = Field(
        default=None,
        description="optional ISO dates, one per close, ascending: folds are then dated, and a training "
        "series of the model that starts later than `closes` is found by its first date",
    )
    folds: Folds = 5
    horizon: Horizon = 1


class Errors(BaseModel):
    mae: float
    rmse: float
    mape: float = Field(description="percent")


class FoldScores(BaseModel):
    model: Errors
    naive: Errors = Field(description='"tomorrow = today": the last close of each origin')
    skill: float = Field(description="1 - MAE(model) / MAE(naive); > 0 beats naive")
    n: int = Field(description="forecasts scored: origins × horizon steps")
    coverage: dict[str, float] = Field(description="share of actual closes inside the 80% and 95% intervals")
    skill_se: float | None = Field(
        default=None, description="Newey-West standard error of the skill (per-origin mean absolute errors)"
    )
    dm_stat: float | None = Field(
        default=None,
        description="Diebold-Mariano statistic vs naive (HLN-corrected; < 0: the model is better)",
    )
    dm_pvalue: float | None = Field(default=None, description="one-sided p-value of 'the model beats naive'")
    dm_pvalue_worse: float | None = Field(default=None, description="one-sided p-value of 'worse than naive'")
    dm_lag: int | None = Field(default=None, description="Newey-West lag: floor(origins^(1/3))")
    verdict: str | None = Field(
        default=None,
        description='"beats naive", "not distinguishable from naive" or "worse than naive" at 5%',
    )


class FoldOut(FoldScores):
    fold: int
    start: int = Field(description="index in `closes` of the fold's first target")
    stop: int = Field(description="index after its last target")
    date_start: str | None
    date_end: str | None
    origins: int = Field(description="forecast origins in the fold")
    in_sample: bool | None = Field(
        description="the fold's targets include closes of the model's own training series before its test "
        "part (matched by the manifest's closes_sha256, not by date); null: the bundle records no hash"
    )
    model_version: str


class Overall(FoldScores):
    folds: int
    folds_beating_naive: int


class BacktestResponse(BaseModel):
    folds: list[FoldOut]
    overall: Overall = Field(description="pooled over every scored forecast of every fold")
    model: str
    model_version: str
