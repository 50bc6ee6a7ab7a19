"""CSV of closes -> validated series -> chronological split -> sliding windows.

Every refusal raises ``DataError`` with one line that names the problem and quotes the bad value; the CLI
turns it into exit code 2 and the ``/train`` endpoint into a 422.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.config import DataConfig
from closecast.representation import Scaler, closes_sha256, fit_scaler, log_returns, sliding_windows

# Each part must leave at least this many one-step forecasts to learn from or to score.
MIN_TRAIN_TARGETS = 20
MIN_EVAL_TARGETS = 5


class DataError(ValueError):
    """The input data cannot be trained on; the message says why and what to do."""


@dataclass
class Series:
    """Validated closes in chronological order, with what was done to get them."""

    closes: npt.NDArray[np.float64]
    dates: list[str] | None
    source: str
    column: str
    date_column: str | None
    rows_read: int
    rows_dropped_empty: int
    notes: list[str] = field(default_factory=list)

    def sha256(self) -> str:
        """Hash of the float64 closes actually used (little-endian bytes)."""
        return closes_sha256(self.closes)


@dataclass(frozen=True)
class Split:
    """Chronological split of the closes by the index of the close being forecast (the target).

    Targets ``[window, train_end)`` train, ``[train_end, val_end)`` validate, ``[val_end, n)`` test.
    An input window may reach back into an earlier part (history is known); a target never appears in two.
    """

    n: int
    train_end: int
    val_end: int

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": self.train_end,
            "validation": self.val_end - self.train_end,
            "test": self.n - self.val_end,
        }


def make_split(n: int, cfg: DataConfig) -> Split:
    train_end = int(n * cfg.train_frac)
    val_end = train_end + int(n * cfg.val_frac)
    return Split(n=n, train_end=train_end, val_end=val_end)


def min_rows(cfg: DataConfig) -> int:
    """Fewest closes for which every part has enough targets.

    A short search from a lower bound; ``DataConfig`` keeps every part at 2% or more, so it ends within a
    few hundred steps whatever the configuration.
    """
    n = cfg.window + MIN_TRAIN_TARGETS + 2 * MIN_EVAL_TARGETS
    while True:
        s = make_split(n, cfg)
        sizes = s.sizes
        if (
            s.train_end - cfg.window >= MIN_TRAIN_TARGETS
            and sizes["validation"] >= MIN_EVAL_TARGETS
            and sizes["test"] >= MIN_EVAL_TARGETS
        ):
            return n
        n += 1


def windows(
    closes: npt.NDArray[np.float64], start: int, stop: int, window: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Input windows ``[N, window]`` and targets ``[N]`` for the targets ``[max(start, window), stop)``."""
    first = max(start, window)
    all_windows = np.asarray(
        sliding_windows(closes, window), dtype=np.float64
    )  # row i: closes[i : i + window]
    return all_windows[first - window : stop - window], closes[first:stop]


def _parse_date(text: str, where: str) -> date:
    """``where`` names the cell in messages: ``line 7: Date`` for a CSV, ``dates[5]`` for JSON."""
    try:
        return datetime.fromisoformat(text.strip()).date()
    except ValueError:
        raise DataError(f"{where} is {text!r}; expected an ISO date such as 2018-12-31") from None


def _parse_close(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where} is {text!r}; expected a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where} is {text!r}; expected a finite number")
    if value <= 0:
        raise DataError(f"{where} is {text!r}; prices must be > 0")
    return value


def _order_by_date(
    closes: list[float], dates: list[date], places: list[str]
) -> tuple[list[float], list[date], list[str]]:
    """Refuse duplicates; accept ascending or newest-first (reversed, and noted); refuse any other order.

    ``places`` name each date in messages: ``line 8: Date`` in a CSV, ``dates[3]`` in JSON.
    """
    seen: dict[date, str] = {}
    for d, place in zip(dates, places, strict=True):
        if d in seen:
            raise DataError(f"{place} is {d.isoformat()}, the same date as {seen[d]}; keep one row per date")
        seen[d] = place
    pairs = list(itertools.pairwise(dates))
    if all(a < b for a, b in pairs):
        return closes, dates, []
    if all(a > b for a, b in pairs):
        return closes[::-1], dates[::-1], ["rows were newest first; reversed into chronological order"]
    i = next(i for i, (a, b) in enumerate(pairs) if a > b)
    raise DataError(
        f"{places[i + 1]} is {dates[i + 1].isoformat()}, earlier than {places[i]} ({dates[i].isoformat()}); "
        "sort the rows by date"
    )


# C0 and C1 control characters and DEL: never part of a column name, and a NUL cannot even pass through a
# command line (a job's CLI arguments), so a header holding one is refused before anything is queued.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_column_name(name: str, where: str) -> None:
    """Refuse a column name holding control characters; ``where`` names it in the message."""
    bad = _CONTROL.search(name)
    if bad:
        raise DataError(
            f"{where} is {name[:60]!r}, which holds the control character {bad.group()!r}; "
            "column names must be printable text, fix the header"
        )


def _columns(
    header: list[str] | None, path: Path, column: str, date_column: str | None, require_date_column: bool
) -> tuple[int, int | None]:
    """Indices of the close and date columns; refuses a missing close column, listing what exists."""
    if not header:
        raise DataError(f"{path.name} is empty; expected a header row with a {column!r} column")
    for number, name in enumerate(header, start=1):
        check_column_name(name, f"{path.name} line 1: column {number}")
    names = [h.strip() for h in header]
    if column not in names:
        raise DataError(f"column {column!r} not found in {path.name}; columns are: {', '.join(names)}")
    if date_column and date_column not in names:
        if require_date_column:
            raise DataError(
                f"date column {date_column!r} not found in {path.name}; columns are: {', '.join(names)}"
            )
        return names.index(column), None
    return names.index(column), names.index(date_column) if date_column else None


def _next_row(reader: Iterator[list[str]], path: Path) -> list[str] | None:
    try:
        return next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name} line 1 is not readable CSV: {exc}") from None


def _rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The data rows; a malformed row (an over-long field, bad bytes) becomes a DataError naming its line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path.name} line {reader.line_num} is not readable CSV: {exc}") from None
        yield row


def load_csv(
    path: Path, column: str = "Close", date_column: str | None = "Date", require_date_column: bool = False
) -> Series:
    """Read and validate a CSV of closes. Empty close cells are dropped and counted; anything else is refused.

    ``date_column`` is optional by default (a file without it is taken in file order); pass
    ``require_date_column`` when the user named it explicitly.
    """
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    closes: list[float] = []
    dates: list[date] = []
    lines: list[int] = []
    rows_read = dropped = 0
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        ci, di = _columns(_next_row(reader, path), path, column, date_column, require_date_column)
        for line, row in enumerate(_rows(reader, path), start=2):
            if not any(cell.strip() for cell in row):
                continue
            rows_read += 1
            cell = row[ci].strip() if ci < len(row) else ""
            if not cell:
                dropped += 1
                continue
            closes.append(_parse_close(cell, f"line {line}: {column}"))
            lines.append(line)
            if di is not None:
                dates.append(_parse_date(row[di] if di < len(row) else "", f"line {line}: {date_column}"))
    used_date_column = date_column if di is not None else None
    notes: list[str] = []
    if used_date_column:
        places = [f"line {line}: {used_date_column}" for line in lines]
        closes, dates, notes = _order_by_date(closes, dates, places)
    if dropped:
        notes.append(f"dropped {dropped} rows with an empty {column}")
    return Series(
        closes=np.asarray(closes, dtype=np.float64),
        dates=[d.isoformat() for d in dates] if used_date_column else None,
        source=path.name,
        column=column,
        date_column=used_date_column,
        rows_read=rows_read,
        rows_dropped_empty=dropped,
        notes=notes,
    )


def check_length(series: Series, cfg: DataConfig) -> Split:
    """Split the series, or refuse it when a part would be too small to learn from or to score."""
    needed = min_rows(cfg)
    n = series.closes.size
    if n < needed:
        raise DataError(
            f"only {n} usable closes; window {cfg.window} with a "
            f"{cfg.train_frac:.0%}/{cfg.val_frac:.0%}/{1 - cfg.train_frac - cfg.val_frac:.0%} split "
            f"needs at least {needed}"
        )
    return make_split(n, cfg)


class ConstantSeries(DataError):
    """The training part does not move, so its returns cannot be standardised."""


def check_trainable(series: Series, cfg: DataConfig) -> tuple[Split, Scaler]:
    """The split and the scaler fitted on the training part only, or a ``DataError`` saying why not.

    One check for the CLI (before it pays for ``import torch``), ``/train`` (before a job is queued) and
    training itself, so all three refuse the same data with the same words.
    """
    split = check_length(series, cfg)
    try:
        scaler = fit_scaler(log_returns(series.closes[: split.train_end]))  # no look-ahead
    except ValueError as exc:
        raise ConstantSeries(str(exc)) from None
    return split, scaler


def series_from_values(
    closes: list[float], dates: list[str] | None = None, source: str = "request"
) -> Series:
    """Validate closes sent as JSON (``/train``) with the same rules and messages as the CSV reader."""
    values = [_parse_close(str(v), f"closes[{i}]") for i, v in enumerate(closes)]
    if dates is None:
        return Series(np.asarray(values), None, source, "closes", None, len(values), 0)
    if len(dates) != len(values):
        raise DataError(
            f"dates has {len(dates)} values but closes has {len(values)}; send one date per close"
        )
    parsed = [_parse_date(d, f"dates[{i}]") for i, d in enumerate(dates)]
    places = [f"dates[{i}]" for i in range(len(values))]
    ordered, ordered_dates, notes = _order_by_date(values, parsed, places)
    return Series(
        np.asarray(ordered),
        [d.isoformat() for d in ordered_dates],
        source,
        "closes",
        "dates",
        len(values),
        0,
        notes,
    )
