"""Bodies of the registry's answers: model cards, versions, how each was made, the promotion history,
promotions, deletions and uploads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingSummary(BaseModel):
    """How a version was trained (its manifest's ``config`` and ``training``); what a bundle lacks is null."""

    settings: dict[str, Any] = Field(
        description="the hyperparameters: window, train_frac, val_frac, features, hidden_size, num_layers, "
        "dropout, bidirectional, epochs (maximum), batch_size, lr, weight_decay, loss, patience, seed"
    )
    epochs_run: int | None = Field(default=None, description="epochs run (early stopping may end sooner)")
    best_epoch: int | None = Field(default=None, description="the epoch whose weights were kept")
    fit_s: float | None = Field(default=None, description="seconds in the epoch loop")
    seconds: float | None = Field(default=None, description="seconds of the fit as recorded by older bundles")
    device: str | None = Field(default=None, description="where it trained: cpu, cuda...")
    job_id: str | None = Field(default=None, description="the `/train` job that trained it (null: the CLI)")
    tuned: bool = Field(default=False, description="a search chose the settings (the manifest's `tuning`)")


class DataSummary(BaseModel):
    """What a version was trained on, without source names."""

    series: int = Field(description="series trained on together")
    closes: int | None = Field(default=None, description="closes used, over every series")
    date_start: str | None = None
    date_end: str | None = None
    frequency: str | None = Field(default=None, description="daily, hourly... (`mixed` across series)")


class PromotionOut(BaseModel):
    """One promotion: the `current` pointer moved from one version to another."""

    model_config = ConfigDict(populate_by_name=True)

    at: str = Field(description="when (ISO 8601 UTC)")
    from_version: str | None = Field(alias="from", description="the version current before (null: none)")
    to_version: str = Field(alias="to", description="the version made current")
    reason: str = Field(description="why, as recorded (a job's gate decision with both MAEs, or by hand)")
    by: Literal["job", "hand", "upload", "registry"] = Field(
        description="`job`: a /train job's gate; `hand`: POST .../promote; `upload`: a new model's uploaded "
        "first version; `registry`: recorded from an existing pointer"
    )
    job_id: str | None = Field(default=None, description="the job, when `by` is `job` and its bundle says")


class ModelHistory(BaseModel):
    model: str
    promotions: list[PromotionOut] = Field(description="newest first")


class VersionUploaded(BaseModel):
    model: str
    version: str = Field(description="the uploaded bundle's version, now in the registry")


class ModelCard(BaseModel):
    """What is served and how good it is, straight from the bundle's manifest."""

    model: str = Field(default="default", description="the model's name")
    version: str = Field(description="bundle version id (UTC creation time + 8 hex digits)")
    format_version: int = Field(description="bundle format (models/README.md)")
    created_at: str = Field(description="ISO 8601 UTC time the bundle was written")
    window: int = Field(description="closes a request must send at least")
    representation: str = Field(description="what the network sees: standardised log returns")
    inputs: list[str] = Field(
        default_factory=lambda: ["closes"],
        description='what a request sends: "closes", then the features the model reads (send them as '
        "`features`)",
    )
    provider: str = Field(description="ONNX Runtime execution provider obtained")
    metrics: dict[str, Any] = Field(
        description="test/validation MAE, RMSE, MAPE of the model and the naive "
        "last-close forecast, skill = 1 - MAE_model/MAE_naive, beats_naive"
    )
    beats_naive: bool | None = Field(
        description="the one-sided Diebold-Mariano test on the test part says the model beats naive at 5% "
        "(bundles written before the test: test skill > 0)"
    )
    skill_se: float | None = Field(
        default=None, description="Newey-West standard error of the test skill (null: older bundle)"
    )
    dm_pvalue: float | None = Field(
        default=None,
        description="one-sided Diebold-Mariano p-value of 'beats naive' on the test part (null: older "
        "bundle)",
    )
    verdict: str | None = Field(
        default=None,
        description='"beats naive", "not distinguishable from naive" or "worse than naive" (5% level)',
    )
    untrained: bool = Field(
        default=False, description="no training epoch beat the starting weights on the validation loss"
    )
    in_sample_rule: str | None = Field(default=None, description="when a backtest fold is flagged in_sample")
    data: dict[str, Any] = Field(description="source, date range, rows and split the model was trained on")
    intervals: dict[str, Any] = Field(description="residual quantiles the intervals come from")
    training: TrainingSummary | None = Field(default=None, description="how it was trained")
    data_summary: DataSummary | None = Field(default=None, description="series, closes and date range")


# --- /models: the stored versions and promotion ------------------------------------------------------


class ModelVersion(BaseModel):
    version: str
    current: bool = Field(description="the `current` pointer names it")
    created_at: str | None = None
    window: int | None = Field(default=None, description="closes the model needs")
    metrics: dict[str, Any] | None = Field(
        default=None, description="test and validation metrics against naive"
    )
    data: dict[str, Any] | None = Field(
        default=None, description="source, date range and rows it was trained on"
    )
    training: TrainingSummary | None = Field(default=None, description="how it was trained")
    data_summary: DataSummary | None = Field(default=None, description="series, closes and date range")
    problem: str | None = Field(
        default=None, description="why its manifest could not be read, if it could not"
    )


class ModelVersions(BaseModel):
    model: str = Field(default="default", description="the model's name")
    current: str | None = Field(description="the version the `current` pointer names")
    served: str | None = Field(description="the version this worker serves now (null: not loaded here)")
    versions: list[ModelVersion] = Field(description="newest first")


class ModelSummary(BaseModel):
    """One model of ``GET /models``: its current version's headline figures."""

    model: str = Field(description="the model's name")
    default: bool = Field(description="requests without `model` use it")
    current_version: str | None = Field(description="the version its `current` pointer names")
    loaded: bool = Field(description="in memory in this worker (the default always is)")
    versions: int = Field(description="stored versions")
    created_at: str | None = Field(default=None, description="when the current version was written")
    window: int | None = Field(default=None, description="closes a request must send at least")
    source: str | None = Field(default=None, description="the data the current version was trained on")
    skill: float | None = Field(default=None, description="test skill = 1 - MAE_model/MAE_naive")
    beats_naive: bool | None = Field(
        default=None,
        description="the Diebold-Mariano test says it beats naive at 5% (older bundles: skill > 0)",
    )
    skill_se: float | None = Field(default=None, description="Newey-West standard error of the test skill")
    dm_pvalue: float | None = Field(default=None, description="one-sided Diebold-Mariano p-value vs naive")
    coverage: dict[str, Any] | None = Field(
        default=None, description="test coverage of the prediction intervals by level"
    )
    problem: str | None = Field(default=None, description="why the current manifest could not be read")


class ModelsOut(BaseModel):
    models: list[ModelSummary] = Field(description="every model name, sorted")


class Promoted(BaseModel):
    model: str = Field(default="default", description="the model promoted")
    version: str = Field(description="the version now current")
    previous: str | None = Field(description="the version served before")


class Deleted(BaseModel):
    model: str = Field(description="the model")
    version: str | None = Field(default=None, description="the version deleted (null: the whole model)")
