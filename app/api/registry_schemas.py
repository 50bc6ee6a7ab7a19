"""Bodies of the registry's own answers: how each version was made, the promotion history, an upload."""

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
