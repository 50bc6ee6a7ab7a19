"""A job's own plain spec and its files: what ``/train`` hands the runner (``Submission``, written by a
``Prepare`` step into the job's work dir), what the job store keeps (``Submission.spec()``, JSON), and how the
series are read back from the work dir for the gate, with the training CLI's reader and arguments.

Nothing here knows HTTP: the request checks that build a ``Submission`` are ``app/api/train_intake.py``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from closecast.series import Series, load_many


@dataclass(frozen=True)
class Submission:
    """A validated job whose data lie in its work dir as ``csvs``, read with the CLI's column arguments."""

    name: str  # the data's label (`source`)
    promote: str
    csvs: list[str]
    column: str
    date_column: str | None  # None: the CLI's default ("Date" when the file has it, else file order)
    rows: int
    params: dict[str, Any]
    epochs: int
    model: str
    id_column: str | None = None  # long format: one series per value of this column
    n_series: int = 1
    tune: dict[str, Any] | None = None  # a search (``python -m training tune``) instead of ``train``

    def initial_progress(self) -> dict[str, Any]:
        """The job's progress while queued: no epoch yet (and, for a search, no trial yet)."""
        progress = {"epoch": 0, "epochs": self.epochs, "train_loss": None, "val_loss": None}
        if self.tune is None:
            return progress
        search = {"trials_done": 0, "trials": self.tune["trials"], "trials_pruned": 0, "best_value": None}
        return {**progress, **search}

    def spec(self) -> dict[str, Any]:
        """What the runner needs to build the command line (stored with the job, in its JSON ``spec``, so
        every job store carries it unchanged). ``csv`` is the first file, as it always was."""
        spec = {
            "csv": self.csvs[0],
            "column": self.column,
            "date_column": self.date_column,
            "rows": self.rows,
            "params": self.params,
        }
        extra = {"csvs": self.csvs if len(self.csvs) > 1 else None, "id_column": self.id_column,
                 "n_series": self.n_series if self.n_series > 1 else None, "tune": self.tune}  # fmt: skip
        return {**spec, **{k: v for k, v in extra.items() if v is not None}}


def spec_files(spec: Mapping[str, Any]) -> list[str]:
    """The job's CSV files (jobs queued before several series existed name one, as ``csv``)."""
    files: list[str] = spec.get("csvs") or [spec["csv"]]
    return files


Prepare = Callable[[Path], Submission]  # writes a job's data into its work dir, returns its spec


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


def job_series(work: Path, spec: Mapping[str, Any]) -> Series | dict[str, Series]:
    """The series the training CLI read from a job's CSVs (same reader, same arguments, the features it
    trained on): one series, else each by its name. The gate scores both models on them."""
    column, date_column = spec["column"], spec.get("date_column")
    found = load_many(
        [work / f for f in spec_files(spec)],
        column,
        date_column or "Date",
        spec.get("id_column"),
        require_date_column=date_column is not None,
        features=spec.get("params", {}).get("features") or (),
    )
    if len(found) == 1 and not spec.get("id_column"):
        return found[0]
    return {s.name: s for s in found}
