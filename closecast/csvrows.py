"""CSV files -> rows of checked cells, grouped by series id; the cell and order checks shared with JSON.

Every refusal raises ``DataError`` with one line that names the problem and quotes the bad value; the CLI
turns it into exit code 2 and the ``/train`` endpoint into a 422.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from closecast.timeaxis import TimestampError, check_one_kind, is_date_only, iso_texts, parse_timestamp

T = TypeVar("T")  # what order_by_date reorders: closes, or their row indices


class DataError(ValueError):
    """The input data cannot be trained on; the message says why and what to do."""


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


def parse_date(text: str, where: str) -> datetime:
    """``where`` names the cell in messages: ``line 7: Date`` for a CSV, ``dates[5]`` for JSON."""
    try:
        return parse_timestamp(text, where)
    except TimestampError as exc:
        raise DataError(str(exc)) from None


def parse_close(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where} is {text!r}; expected a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where} is {text!r}; expected a finite number")
    if value <= 0:
        raise DataError(f"{where} is {text!r}; prices must be > 0")
    return value


def parse_feature(feature: str, text: str, where: str) -> float:
    """A high/low/open cell is a price (> 0); a volume cell is finite and >= 0 (a day without trades is 0)."""
    if feature != "volume":
        return parse_close(text, where) if text else _empty(where)
    if not text:
        _empty(where)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where} is {text!r}; expected a number") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{where} is {text!r}; a volume must be finite and >= 0")
    return value


def _empty(where: str) -> float:
    raise DataError(f"{where} is empty; every row with a close needs each feature (or drop --features)")


def order_by_date(
    closes: list[T], dates: list[datetime], places: list[str]
) -> tuple[list[T], list[datetime], list[str]]:
    """Refuse duplicates (on the full timestamp) and a mix of zoned and plain times; accept ascending or
    newest-first (reversed, and noted); refuse any other order.

    ``places`` name each date in messages: ``line 8: Date`` in a CSV, ``dates[3]`` in JSON.
    """
    try:
        check_one_kind(dates, places)
    except TimestampError as exc:
        raise DataError(str(exc)) from None
    texts = iso_texts(dates)
    unit = "date" if is_date_only(dates) else "timestamp"
    seen: dict[datetime, str] = {}
    for d, text, place in zip(dates, texts, places, strict=True):
        if d in seen:
            raise DataError(f"{place} is {text}, the same {unit} as {seen[d]}; keep one row per {unit}")
        seen[d] = place
    pairs = list(itertools.pairwise(dates))
    if all(a < b for a, b in pairs):
        return closes, dates, []
    if all(a > b for a, b in pairs):
        return closes[::-1], dates[::-1], ["rows were newest first; reversed into chronological order"]
    i = next(i for i, (a, b) in enumerate(pairs) if a > b)
    raise DataError(
        f"{places[i + 1]} is {texts[i + 1]}, earlier than {places[i]} ({texts[i]}); sort the rows by {unit}"
    )


@dataclass(frozen=True)
class _Layout:
    """Where the close, date and id cells sit in each row (``None``: no such column)."""

    close: int
    date: int | None
    ident: int | None
    features: tuple[tuple[str, int, str], ...] = ()  # (feature, column index, column name as written)


def _columns(
    header: list[str] | None,
    path: Path,
    column: str,
    date_column: str | None,
    id_column: str | None,
    require_date_column: bool,
    features: Sequence[str] = (),
) -> _Layout:
    """Indices of the close, date, id and feature columns (features matched case-insensitively: ``high``
    reads ``High``); refuses a missing close, id or feature column, listing them all."""
    if not header:
        raise DataError(f"{path.name} is empty; expected a header row with a {column!r} column")
    for number, name in enumerate(header, start=1):
        check_column_name(name, f"{path.name} line 1: column {number}")
    names = [h.strip() for h in header]
    listing = ", ".join(names)
    if column not in names:
        raise DataError(f"column {column!r} not found in {path.name}; columns are: {listing}")
    if id_column and id_column not in names:
        raise DataError(f"id column {id_column!r} not found in {path.name}; columns are: {listing}")
    if date_column and date_column not in names and require_date_column:
        raise DataError(f"date column {date_column!r} not found in {path.name}; columns are: {listing}")
    lowered = [n.lower() for n in names]
    for feature in features:
        if feature not in lowered:
            raise DataError(
                f"feature column {feature!r} (any case) not found in {path.name}; columns are: {listing}"
            )
    return _Layout(
        close=names.index(column),
        date=names.index(date_column) if date_column in names else None,
        ident=names.index(id_column) if id_column else None,
        features=tuple((f, lowered.index(f), names[lowered.index(f)]) for f in features),
    )


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


@dataclass
class Rows:
    """One series' rows as read, before ordering."""

    closes: list[float] = field(default_factory=list)
    dates: list[datetime] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    read: int = 0
    dropped: int = 0
    features: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self, row: list[str], line: int, layout: _Layout, column: str, date_column: str, prefix: str
    ) -> None:
        """Parse one data row; an empty close cell is dropped and counted."""
        self.read += 1
        cell = row[layout.close].strip() if layout.close < len(row) else ""
        if not cell:
            self.dropped += 1
            return
        self.closes.append(parse_close(cell, f"{prefix}line {line}: {column}"))
        self.lines.append(line)
        for feature, index, name in layout.features:
            text = row[index].strip() if index < len(row) else ""
            where = f"{prefix}line {line}: {name}"
            self.features.setdefault(feature, []).append(parse_feature(feature, text, where))
        if layout.date is not None:
            text = row[layout.date] if layout.date < len(row) else ""
            self.dates.append(parse_date(text, f"{prefix}line {line}: {date_column}"))


def read_groups(
    path: Path,
    column: str,
    date_column: str | None,
    id_column: str | None,
    require_date_column: bool,
    features: Sequence[str] = (),
) -> tuple[dict[str, Rows], _Layout]:
    """The rows of ``path`` grouped by id value (one group ``""`` without an id column)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    groups: dict[str, Rows] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = _next_row(reader, path)
        layout = _columns(header, path, column, date_column, id_column, require_date_column, features)
        for line, row in enumerate(_rows(reader, path), start=2):
            if not any(cell.strip() for cell in row):
                continue
            key = ""
            if layout.ident is not None:
                key = row[layout.ident].strip() if layout.ident < len(row) else ""
                if not key:
                    raise DataError(f"line {line}: {id_column} is empty; give every row its series id")
            prefix = f"{key}: " if key else ""
            groups.setdefault(key, Rows()).add(row, line, layout, column, date_column or "", prefix)
    return groups, layout


def csv_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, each directory replaced by the ``*.csv`` files inside it, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.csv") if p.is_file())
            if not inside:
                raise DataError(f"directory {path} holds no *.csv files")
            files.extend(inside)
        else:
            files.append(path)
    if not files:
        raise DataError("no CSV file given; pass at least one --csv")
    return files
