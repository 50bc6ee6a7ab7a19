"""What the registry API shows of how a version was made, read from its manifest: the training settings,
the fit, the job that trained it, and a summary of its data without file names.

Every field is optional in the manifest (bundles written before it, imported ones): what is missing is left
out, never guessed.
"""

from __future__ import annotations

from typing import Any

JOB_ID_ENV = "CLOSECAST_JOB_ID"  # set by the job service for its training process; the manifest records it

# The settings a user chose or tuned, by the manifest's config section (closecast/config.py).
SETTINGS = {
    "data": ("window", "train_frac", "val_frac", "features"),
    "model": ("hidden_size", "num_layers", "dropout", "bidirectional"),
    "train": ("epochs", "batch_size", "lr", "weight_decay", "loss", "patience", "seed"),
}
FIT = ("epochs_run", "best_epoch", "fit_s", "seconds", "device", "job_id")


def training_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (the config's hyperparameters), the fit (``epochs_run``, ``best_epoch``, ``fit_s``: the
    epoch loop, ``seconds``: the fit as recorded before ``fit_s`` existed, ``device``), the ``job_id`` of the
    job that trained it, and ``tuned`` (a search chose the settings)."""
    config = manifest.get("config") or {}
    settings = {
        key: section[key]
        for part, keys in SETTINGS.items()
        if isinstance(section := config.get(part), dict)
        for key in keys
        if key in section
    }
    training = manifest.get("training") or {}
    fit = {key: training[key] for key in FIT if key in training}
    return {"settings": settings, **fit, "tuned": "tuning" in manifest}


def data_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """How many series and closes, over which dates, at which frequency: no source names (a job's label or
    an upload's file name says what someone trained on; ``data`` has them for the key holder)."""
    data = manifest.get("data") or {}
    series = data.get("series")
    summary = {
        "series": len(series) if isinstance(series, list) else 1,
        "closes": data.get("rows_used"),
        "date_start": data.get("date_start"),
        "date_end": data.get("date_end"),
        "frequency": data.get("frequency"),
    }
    return {k: v for k, v in summary.items() if v is not None}
