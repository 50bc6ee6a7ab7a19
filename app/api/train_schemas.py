"""Bodies of ``/train`` (they are the OpenAPI docs at ``/docs``).

The hyperparameters (``TrainParams``) are made from ``closecast/config.py``'s field metadata
(``app/api/params_model.py``): their values are checked by ``closecast.config`` itself, so a bad value gets
the CLI's own message (``window is 2; it must be in [3, 1000] closes``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.params_model import ParamsBase, params_model
from app.api.schemas import ModelName, WholeNumber
from app.config import MAX_CLOSES_CEILING
from app.storage.job_store import Job

WholeOrNone = Annotated[int | None, WholeNumber]  # 21.0 is the integer 21, as in JSON Schema
PromoteMode = Literal["auto", "always", "never"]
FeatureName = Literal["high", "low", "open", "volume"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_TUNE_WORKERS = 16  # shards of one tune job; each holds a worker and PostgreSQL connections

Source = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="a label for the data (letters, digits, `._-`, at most 64); the bundle's manifest "
        "records it as `data.source` = `<source>.csv`",
    ),
]
_MODEL_FIELD = Field(
    default=None,
    description="the model to train (GET /models lists them); a new name is created by its first successful "
    "job, whose version becomes that model's current one; default: the default model",
)
_NAME_FIELD = Field(default=None, deprecated=True, description="deprecated alias of `source`")
Promote = Annotated[
    PromoteMode,
    Field(
        description="`auto`: the new model becomes current only if its test MAE is not worse than the "
        "current model's on the same closes; `always`: it becomes current; `never`: it is only registered"
    ),
]


if TYPE_CHECKING:  # made at import; typed as its base, which has every method
    TrainParams = ParamsBase
else:  # one optional field per `/train` hyperparameter of closecast/config.py, from its metadata
    TrainParams = params_model("TrainParams", ParamsBase)


Closes = Annotated[list[float], Field(max_length=MAX_CLOSES_CEILING)]
# > 0 stated in the schema only: the value is checked with the service's own message (`price_not_positive`)
Price = Annotated[float, Field(json_schema_extra={"exclusiveMinimum": 0})]
Prices = Annotated[list[Price], Field(max_length=MAX_CLOSES_CEILING)]
Features = dict[FeatureName, Closes]
_FEATURES = (
    'OHLCV values aligned with `closes`: {"high": [...], "low": [...], "volume": [...]}; name the ones to '
    "train on in `params.features`"
)


class TrainSeries(BaseModel):
    """One of several series trained on together (`series`); its `id` names it in the manifest."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, Field(pattern=NAME_PATTERN, description="the series' name (letters, digits, `._-`)")]
    closes: Prices = Field(
        description="closing prices, each finite and > 0, oldest first (or any order with dates)"
    )
    dates: list[str] | None = Field(
        default=None, max_length=MAX_CLOSES_CEILING, description="ISO dates or timestamps, one per close"
    )
    features: Features | None = Field(default=None, description=_FEATURES)


class TuneRequest(BaseModel):
    """An Optuna search as the job (`python -m training tune`): the best trial is refitted and judged."""

    model_config = ConfigDict(extra="forbid", strict=True)

    trials: Annotated[int, WholeNumber, Field(ge=1, le=10_000, description="trials to run")] = 20
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="stop starting trials after this; below CLOSECAST_TUNE_TIMEOUT_S, which also bounds the "
        "whole job (search plus the final refit)",
    )
    trial_timeout_s: float | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="prune a trial running longer (default: timeout_s)"
    )
    folds: Annotated[int, WholeNumber, Field(ge=1, le=20, description="walk-forward folds")] = 3
    workers: Annotated[
        int,
        WholeNumber,
        Field(
            ge=1,
            le=MAX_TUNE_WORKERS,
            description="shards of one Optuna study, run by this many workers at once (PostgreSQL backend "
            "only: CLOSECAST_DATABASE_URL); at most `trials`",
        ),
    ] = 1


class TrainRequest(BaseModel):
    """Closes to train a new model version on (JSON): one series (`closes`) or several (`series`);
    `POST /train` also takes multipart CSV uploads."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # JSON types as declared: `true` or "100.5" is not a price, "21" not a window
        json_schema_extra={
            "examples": [
                {"closes": [100.0, 100.4, 99.8, "..."], "params": {"epochs": 20}, "promote": "auto"}
            ],
            # one series (`closes`, with `dates` and `features`), or several (`series`): never both, never
            # neither; a null is the same as absent, so each branch names the types that count as sent
            "oneOf": [
                {
                    "required": ["closes"],
                    "properties": {"closes": {"type": "array"}, "series": {"type": "null"}},
                },
                {
                    "required": ["series"],
                    "properties": {
                        "series": {"type": "array"},
                        "closes": {"type": "null"},
                        "dates": {"type": "null"},
                        "features": {"type": "null"},
                    },
                },
            ],
        },
    )

    closes: list[Price] | None = Field(
        default=None,
        max_length=MAX_CLOSES_CEILING,
        description="closing prices, each finite and > 0, oldest first (or newest first with `dates`); "
        "enough for the window and the 70/10/20 split (50 for window 11, 59 for the default 21); or send "
        "`series` instead",
    )
    dates: list[str] | None = Field(
        default=None,
        max_length=MAX_CLOSES_CEILING,
        description="optional ISO dates, one per close, unique and sorted (newest first is reversed)",
    )
    features: Features | None = Field(default=None, description=_FEATURES)
    series: list[TrainSeries] | None = Field(
        default=None,
        min_length=1,
        description="several series trained on together (instead of `closes`, `dates` and `features`); at "
        "most CLOSECAST_MAX_BATCH_SERIES, with at most 1000000 closes in all",
    )
    model: ModelName | None = _MODEL_FIELD
    source: Source | None = None
    name: Source | None = _NAME_FIELD
    params: TrainParams = Field(default_factory=lambda: TrainParams())
    promote: Promote = "auto"
    tune: TuneRequest | None = Field(default=None, description="run a hyperparameter search as the job")

    def source_label(self) -> str:
        return self.source or self.name or "request"


# No control character in a column name (`column_invalid`): in the schema only, the refusal keeps its message
_PRINTABLE: dict[str, Any] = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]+$"}


class UploadForm(TrainParams):
    """The multipart form of `POST /train` besides `file`: the CSV's columns, the options, the params."""

    column: str = Field(
        "Close",
        min_length=1,
        max_length=200,
        description="column holding the closes",
        json_schema_extra=_PRINTABLE,
    )
    date_column: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        json_schema_extra=_PRINTABLE,
        description="column holding the dates; default `Date` when the file has it, else file order",
    )
    id_column: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        json_schema_extra=_PRINTABLE,
        description="long format: the column naming each row's series (e.g. `symbol`); one series per value",
    )
    model: ModelName | None = _MODEL_FIELD
    source: Source | None = Field(
        default=None, description="default: the upload's file name without `.csv` (`<n>-series` for several)"
    )
    name: Source | None = _NAME_FIELD
    promote: Promote = "auto"
    tune_trials: WholeOrNone = Field(default=None, ge=1, le=10_000, description="`tune.trials`: run a search")
    tune_timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600, description="`tune.timeout_s`")
    tune_trial_timeout_s: float | None = Field(
        default=None, gt=0, le=7 * 24 * 3600, description="`tune.trial_timeout_s`"
    )
    tune_folds: WholeOrNone = Field(default=None, ge=1, le=20, description="`tune.folds`")
    tune_workers: WholeOrNone = Field(default=None, ge=1, le=MAX_TUNE_WORKERS, description="`tune.workers`")

    def params(self) -> TrainParams:
        return TrainParams(**self.model_dump(include=set(TrainParams.model_fields)))

    def tune(self) -> TuneRequest | None:
        """The search asked by the ``tune_*`` fields, or None (a plain training job) when none is set."""
        given = {k.removeprefix("tune_"): v for k, v in self if k.startswith("tune_") and v is not None}
        return TuneRequest(**given) if given else None


class JobAccepted(BaseModel):
    job_id: str = Field(description="poll `GET /train/{job_id}` (the `Location` header)")
    status: JobStatus = Field(description="`queued` at first")


Phase = Literal[
    "queued", "loading", "training", "search", "refit", "calibrating", "exporting", "judging", "promoting"
]


class PhaseAt(BaseModel):
    phase: Phase
    at: str = Field(description="when the job entered it (ISO 8601 UTC)")


class Progress(BaseModel):
    phase: Phase | None = Field(
        default=None,
        description="where the job stands: `queued`, `loading` (the training process started: imports and "
        "data), `training` (its epochs in `epoch`/`epochs`), `calibrating` (intervals and test scores), "
        "`exporting` (ONNX, TorchScript, parity, bundle), `judging` (verification and the promotion gate), "
        "`promoting` (registering, and making current if judged so); a search has `search` and `refit` "
        "instead of `training`; the last phase entered stays once the job ended",
    )
    phases: list[PhaseAt] = Field(default_factory=list, description="the phases entered so far, in order")
    epoch: int = Field(ge=0, description="epochs finished (0 before the first)")
    epochs: int = Field(ge=1, description="maximum epochs; early stopping may end sooner")
    train_loss: float | None = Field(
        default=None, description="training loss of the last epoch (scaled units)"
    )
    val_loss: float | None = Field(
        default=None, description="validation loss of the last epoch (scaled units)"
    )


class TuneProgress(Progress):
    """A tune job's progress: the search's trials (phase `search`), then the refit's epochs (`refit`)."""

    trials_done: int | None = Field(default=None, description="trials finished (completed or pruned)")
    trials: int | None = Field(default=None, description="trials asked")
    trials_pruned: int | None = Field(default=None, description="trials pruned")
    best_value: float | None = Field(
        default=None,
        description="the best objective so far (model MAE / naive MAE over the folds)",
    )


class JobResult(BaseModel):
    model: str = Field(default="default", description="the model the version belongs to")
    version: str = Field(description="the new version in the registry")
    metrics: dict[str, Any] = Field(
        description="`test`: the bundle's own test metrics; `gate`: candidate, current (`against`: `current`;"
        " "
        "for a new model's first version the default model, `against`: `default`) and naive MAE on the "
        "candidate's test closes, the one-sided Diebold-Mariano tests of candidate vs the other "
        "(`dm_stat`, `dm_pvalue_better`, `dm_pvalue_worse`, `dm_lag`) and `identical` (the same model)"
    )
    promoted: bool = Field(description="whether the new version is now current")
    reason: str = Field(description="why it was or was not promoted: both MAEs, the test and its p-values")
    untrained: bool = Field(
        default=False, description="no epoch beat the starting weights on the validation loss (best epoch 0)"
    )


class JobOut(BaseModel):
    job_id: str
    status: JobStatus
    model: str = Field(description="the model the job trains")
    source: str = Field(description="the data's label")
    promote: PromoteMode
    params: dict[str, Any] = Field(description="the hyperparameters sent (defaults fill the rest)")
    series: int = Field(default=1, description="series trained on")
    tune: TuneRequest | None = Field(default=None, description="the search asked (tune jobs only)")
    shard_of: str | None = Field(
        default=None, description="a shard of a distributed tune job: its parent (which refits and is judged)"
    )

    progress: TuneProgress | Progress | None = None
    created_at: str = Field(description="ISO 8601 UTC")
    started_at: str | None = None
    finished_at: str | None = None
    result: JobResult | None = Field(default=None, description="set once the job succeeded")
    error: str | None = Field(default=None, description="why the job failed or was cancelled")

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.id,
            status=job.status,  # type: ignore[arg-type]  # the store's CHECK constraint guarantees it
            model=job.model,
            source=job.name,
            promote=job.promote,  # type: ignore[arg-type]
            params=job.spec.get("params", {}),
            series=job.spec.get("n_series", 1),
            tune=TuneRequest(**job.spec["tune"]) if job.spec.get("tune") else None,
            shard_of=job.spec.get("shard_of"),
            progress=_progress(job.progress),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            result=JobResult(**job.result) if job.result else None,
            error=job.error,
        )


def _progress(progress: dict[str, Any] | None) -> TuneProgress | Progress | None:
    if not progress:
        return None
    return TuneProgress(**progress) if "trials" in progress else Progress(**progress)


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="newest first")
