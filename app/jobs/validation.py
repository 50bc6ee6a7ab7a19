"""The training CLI's own input checks, run before a job is queued, so ``/train`` refuses bad data at once
with the messages ``python -m training train`` prints (as a 422).

The checks themselves live in the core (``closecast.config``, ``closecast.series``): numpy only, never
torch (``tests/jobs/test_no_torch.py`` keeps it so).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.api.train_schemas import TrainRequest, UploadForm
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


@dataclass(frozen=True)
class Submission:
    """A validated job whose data lie in its work dir as ``csv``, read with the CLI's column arguments."""

    name: str  # the data's label (`source`)
    promote: str
    csv: str
    column: str
    date_column: str | None  # None: the CLI's default ("Date" when the file has it, else file order)
    rows: int
    params: dict[str, Any]
    epochs: int
    model: str

    def spec(self) -> dict[str, Any]:
        """What the runner needs to build the command line (stored with the job)."""
        return {
            "csv": self.csv,
            "column": self.column,
            "date_column": self.date_column,
            "rows": self.rows,
            "params": self.params,
        }


Prepare = Callable[[Path], Submission]


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
) -> Series:
    """Closes (and features) sent as JSON, validated and length-checked like a CSV."""
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
    return _long_enough(series, cfg, ("body", "closes"))


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


def write_series_csv(path: Path, series: Series) -> None:
    """``Date,Close`` (or ``Close``) rows in chronological order; ``repr`` keeps every float bit."""
    names = list(series.features)
    columns = [series.closes, *(series.features[n] for n in names)]
    rows = ([repr(float(v)) for v in row] for row in zip(*columns, strict=True))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if series.dates is None:
            writer.writerow(["Close", *names])
            writer.writerows(rows)
        else:
            writer.writerow(["Date", "Close", *names])
            writer.writerows([d, *row] for d, row in zip(series.dates, rows, strict=True))


def prepare_values(body: TrainRequest, threads: int, model: str) -> Prepare:
    """Validate JSON closes now; the returned step writes them as the job's CSV."""
    cfg = training_config(body.params.overrides(), threads)
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
            csv_name,
            "Close",
            "Date" if series.dates else None,
            int(series.closes.size),
            body.params.overrides(),
            cfg.train.epochs,
            model,
        )

    return prepare


def prepare_upload(
    form: UploadForm, filename: str | None, content: bytes, threads: int, model: str
) -> Prepare:
    """Validate the form now; the returned step stores the CSV as sent and reads it as the CLI will."""
    params = form.params().overrides()
    cfg = training_config(params, threads, form.column, form.date_column)
    name = form.source or form.name or upload_name(filename)

    def prepare(work: Path) -> Submission:
        csv_name = f"{name}.csv"
        (work / csv_name).write_bytes(content)
        series = series_of_csv(work / csv_name, cfg, date_column_named=form.date_column is not None)
        return Submission(
            name,
            form.promote,
            csv_name,
            form.column,
            form.date_column,
            int(series.closes.size),
            params,
            cfg.train.epochs,
            model,
        )

    return prepare


def upload_name(filename: str | None) -> str:
    """A job name from an upload's file name: ``my prices (2).csv`` -> ``my_prices__2_``."""
    stem = Path(filename or "").stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:64]
    return cleaned or "upload"


def job_closes(csv_path: Path, column: str, date_column: str | None) -> npt.NDArray[np.float64]:
    """The closes the training CLI read from a job's CSV (same reader, same arguments)."""
    return load_csv(
        csv_path, column, date_column or "Date", require_date_column=date_column is not None
    ).closes
