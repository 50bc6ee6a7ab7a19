"""The training CLI's own input checks, run before a job is queued, so ``/train`` refuses bad data at once
with the messages ``python -m training train`` prints (as a 422). Several series (``app/api/train_many.py``)
are checked as the CLI checks them, each message starting with the series' id.

The checks themselves live in the core (``closecast.config``, ``closecast.series``): numpy only, never
torch (``tests/jobs/test_no_torch.py`` keeps it so). What a check accepts becomes a plain
``app.jobs.spec.Submission``: the jobs never see a request schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.api.train_schemas import TrainParams, TrainRequest, TuneRequest, UploadForm
from app.config import Settings
from app.jobs.spec import Prepare, Submission, write_series_csv
from closecast.config import Config
from closecast.csvrows import check_column_name
from closecast.errors import InputInvalid, Loc, Problem
from closecast.series import (
    ConstantSeries,
    MissingFeature,
    Series,
    check_trainable,
    load_csv,
    series_from_values,
)


def _invalid(loc: Loc, exc: ValueError, kind: str) -> InputInvalid:
    return InputInvalid([Problem(loc, str(exc), kind)])


def training_config(
    params: dict[str, Any], threads: int, column: str = "Close", date_column: str | None = None
) -> Config:
    """The configuration the CLI will build from the same flags; bad values as 422 with its messages."""
    for field, name in (("column", column), ("date_column", date_column)):
        try:
            check_column_name(name or "", field)
        except ValueError as exc:
            raise _invalid(("body", field), exc, "column_invalid") from None
    overrides = {**params, "threads": threads, "column": column, "date_column": date_column or "Date"}
    try:
        return Config.from_overrides(overrides)
    except (TypeError, ValueError) as exc:
        raise _invalid(("body", "params"), ValueError(str(exc)), "param_invalid") from None


def series_of_values(
    closes: list[float],
    dates: list[str] | None,
    cfg: Config,
    features: Mapping[str, list[float]] | None = None,
    check_length: bool = True,
) -> Series:
    """Closes (and features) sent as JSON, validated and (with ``check_length``) length-checked like a
    CSV; several series are length-checked together (``app/api/train_many.py``)."""
    unused = sorted(set(features or {}) - set(cfg.data.features))
    if unused:
        raise _invalid(("body", "features", unused[0]), ValueError(
            f"features.{unused[0]} is sent but params.features is {list(cfg.data.features)}; name it there "
            "to train on it, or drop it"), "feature_not_used")  # fmt: skip
    try:
        series = series_from_values(closes, dates, features=features)
    except ValueError as exc:
        field = next((f for f in ("dates", "features") if str(exc).startswith(f)), "closes")
        raise _invalid(("body", field), exc, "data_invalid") from None
    return _long_enough(series, cfg, ("body", "closes")) if check_length else series


def series_of_csv(path: Path, cfg: Config, date_column_named: bool) -> Series:
    """An uploaded CSV, read by the CLI's reader with the same column arguments the job will pass it."""
    try:
        series = load_csv(
            path, cfg.data.column, cfg.data.date_column, date_column_named, features=cfg.data.features
        )
    except ValueError as exc:
        raise _invalid(("body", "file"), exc, "data_invalid") from None
    return _long_enough(series, cfg, ("body", "file"))


def _long_enough(series: Series, cfg: Config, loc: Loc) -> Series:
    """Every part of the split big enough, and a training part that can be scaled (not constant)."""
    try:
        check_trainable(series, cfg.data)
    except ConstantSeries as exc:
        raise _invalid(loc, exc, "series_constant") from None
    except MissingFeature as exc:
        raise _invalid(
            ("body", "features") if loc[-1] == "closes" else loc, exc, "features_missing"
        ) from None
    except ValueError as exc:
        raise _invalid(loc, exc, "series_too_short") from None
    return series


def tune_spec(tune: TuneRequest | None, settings: Settings, params: TrainParams) -> dict[str, Any] | None:
    """The search a tune job runs, or None; a search budget the job's own limit cannot hold is a 422."""
    if tune is None:
        return None
    if params.overrides().get("features"):
        why = "tune searches on the closes alone (python -m training tune reads no features); drop "
        raise _invalid(("body", "params", "features"), ValueError(why + "params.features"), "tune_invalid")
    if tune.timeout_s is not None and tune.timeout_s >= settings.tune_timeout_s:
        why = (
            f"tune.timeout_s is {tune.timeout_s:g} but a tune job may run {settings.tune_timeout_s:g} s in "
            "all (CLOSECAST_TUNE_TIMEOUT_S), the final refit included; ask for less"
        )
        raise _invalid(("body", "tune", "timeout_s"), ValueError(why), "tune_invalid")
    check_tune_workers(tune, settings)
    return tune.model_dump()


def check_tune_workers(tune: TuneRequest, settings: Settings) -> None:
    """Shards need a study every worker can reach (PostgreSQL) and at least one trial each."""
    if tune.workers == 1:
        return
    loc = ("body", "tune", "workers")
    if settings.database_url is None:
        why = (
            f"tune.workers is {tune.workers} but this service uses the embedded job store, where one job "
            "runs at a time on this machine; set CLOSECAST_DATABASE_URL (PostgreSQL) and run `closecast "
            "worker` processes to spread a search, or send workers 1"
        )
        raise _invalid(loc, ValueError(why), "tune_invalid")
    if tune.workers > tune.trials:
        why = f"tune.workers is {tune.workers} but tune.trials is {tune.trials}; ask for at most one a trial"
        raise _invalid(loc, ValueError(why), "tune_invalid")


def prepare_values(body: TrainRequest, settings: Settings, model: str) -> Prepare:
    """Validate JSON closes now; the returned step writes them as the job's CSV."""
    assert body.closes is not None  # app/api/train_many.py sends several series elsewhere
    cfg = training_config(body.params.overrides(), settings.train_threads)
    tune = tune_spec(body.tune, settings, body.params)
    series = series_of_values(
        body.closes, body.dates, cfg, {str(k): v for k, v in (body.features or {}).items()}
    )
    source = body.source_label()

    def prepare(work: Path) -> Submission:
        csv_name = f"{source}.csv"
        write_series_csv(work / csv_name, series)
        return Submission(
            source,
            body.promote,
            [csv_name],
            "Close",
            "Date" if series.dates else None,
            int(series.closes.size),
            body.params.overrides(),
            cfg.train.epochs,
            model,
            tune=tune,
        )

    return prepare


def prepare_upload(
    form: UploadForm, files: list[tuple[str | None, bytes]], settings: Settings, model: str
) -> Prepare:
    """Validate the form now; the returned step stores the CSVs as sent and reads them as the CLI will."""
    params = form.params().overrides()
    cfg = training_config(params, settings.train_threads, form.column, form.date_column)
    tune = tune_spec(form.tune(), settings, form.params())
    filename, content = files[0]
    name = form.source or form.name or upload_name(filename)

    def prepare(work: Path) -> Submission:
        csv_name = f"{name}.csv"
        (work / csv_name).write_bytes(content)
        series = series_of_csv(work / csv_name, cfg, date_column_named=form.date_column is not None)
        return Submission(
            name,
            form.promote,
            [csv_name],
            form.column,
            form.date_column,
            int(series.closes.size),
            params,
            cfg.train.epochs,
            model,
            tune=tune,
        )

    return prepare


def upload_name(filename: str | None) -> str:
    """A job name from an upload's file name: ``my prices (2).csv`` -> ``my_prices__2_``."""
    stem = Path(filename or "").stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:64]
    return cleaned or "upload"
