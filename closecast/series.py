"""CSV of closes -> validated series -> chronological split -> sliding windows.

One file holds one series, or several in long format (an id column such as ``symbol``); ``load_many``
reads files, directories and id columns into named series (``closecast.collection`` splits them by time).

Every refusal raises ``DataError`` with one line that names the problem and quotes the bad value; the CLI
turns it into exit code 2 and the ``/train`` endpoint into a 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from closecast.config import DataConfig
from closecast.csvrows import (
    DataError,
    Rows,
    csv_files,
    order_by_date,
    parse_close,
    parse_date,
    parse_feature,
    read_groups,
)
from closecast.representation import Scaler, closes_sha256, fit_scaler, log_returns, sliding_windows
from closecast.timeaxis import infer_frequency, iso_texts

__all__ = ["DataError", "Series", "Split", "load_csv", "load_many", "series_from_values"]

# Each part must leave at least this many one-step forecasts to learn from or to score.
MIN_TRAIN_TARGETS = 20
MIN_EVAL_TARGETS = 5


@dataclass
class Series:
    """Validated closes in chronological order, with what was done to get them.

    ``dates`` are ISO text: plain dates (``2018-12-31``) when every timestamp is a naive midnight, else full
    times (``2017-04-19T09:00:00+00:00``); ``datetimes`` parses them back for comparisons.
    """

    closes: npt.NDArray[np.float64]
    dates: list[str] | None
    source: str
    column: str
    date_column: str | None
    rows_read: int
    rows_dropped_empty: int
    notes: list[str] = field(default_factory=list)
    name: str = ""  # the file's stem, or the id value in a long-format file
    id_column: str | None = None
    features: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)  # name -> one per close

    def sha256(self) -> str:
        """Hash of the float64 closes actually used (little-endian bytes)."""
        return closes_sha256(self.closes)

    @cached_property
    def datetimes(self) -> list[datetime] | None:
        return [datetime.fromisoformat(d) for d in self.dates] if self.dates is not None else None

    @cached_property
    def frequency(self) -> str | None:
        """The inferred step between closes ("1h", "1d", ..., "irregular"); ``None`` without dates."""
        return infer_frequency(self.datetimes) if self.datetimes else None


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


def _series(
    rows: Rows, path: Path, column: str, date_column: str | None, name: str, id_column: str | None
) -> Series:
    """Order the rows by date (when there is a date column) and note what was done."""
    order, dates = list(range(len(rows.closes))), rows.dates
    notes: list[str] = []
    if date_column:
        places = [f"line {line}: {date_column}" for line in rows.lines]
        order, dates, notes = order_by_date(order, dates, places)
    closes = [rows.closes[i] for i in order]
    features = {k: np.asarray(v, dtype=np.float64)[order] for k, v in rows.features.items()}
    if rows.dropped:
        notes.append(f"dropped {rows.dropped} rows with an empty {column}")
    return Series(
        closes=np.asarray(closes, dtype=np.float64),
        dates=iso_texts(dates) if date_column else None,
        source=path.name,
        column=column,
        date_column=date_column,
        rows_read=rows.read,
        rows_dropped_empty=rows.dropped,
        notes=notes,
        name=name,
        id_column=id_column,
        features=features,
    )


def load_csv(
    path: Path,
    column: str = "Close",
    date_column: str | None = "Date",
    require_date_column: bool = False,
    features: Sequence[str] = (),
) -> Series:
    """Read and validate a CSV of closes. Empty close cells are dropped and counted; anything else is refused.

    ``date_column`` is optional by default (a file without it is taken in file order); pass
    ``require_date_column`` when the user named it explicitly.
    """
    groups, layout = read_groups(path, column, date_column, None, require_date_column, features)
    used_date_column = date_column if layout.date is not None else None
    return _series(groups.get("", Rows()), path, column, used_date_column, path.stem, None)


def _prefixed(name: str, exc: DataError) -> DataError:
    return type(exc)(f"{name}: {exc}")


def load_many(
    paths: Sequence[Path],
    column: str = "Close",
    date_column: str | None = "Date",
    id_column: str | None = None,
    require_date_column: bool = False,
    features: Sequence[str] = (),
) -> list[Series]:
    """Every series in ``paths`` (files or directories of ``*.csv``), each named by its file's stem or, with
    ``id_column``, by its id value (long format: one row per id and date), sorted by id within a file.

    One file without an id column reads exactly as ``load_csv``; with several, each message starts with the
    series name. Two series with one name are refused: names key the manifest and per-series metrics.
    """
    files = csv_files(paths)
    found: list[Series] = []
    for path in files:
        if id_column is None:
            try:
                found.append(load_csv(path, column, date_column, require_date_column, features))
            except DataError as exc:
                raise exc if len(files) == 1 else _prefixed(path.stem, exc) from None
            continue
        groups, layout = read_groups(path, column, date_column, id_column, require_date_column, features)
        used = date_column if layout.date is not None else None
        for key in sorted(groups):
            try:
                found.append(_series(groups[key], path, column, used, key, id_column))
            except DataError as exc:
                raise _prefixed(key, exc) from None
    _check_unique_names(found)
    return found


def _check_unique_names(series: Sequence[Series]) -> None:
    first: dict[str, Series] = {}
    for s in series:
        if s.name in first:
            raise DataError(
                f"two series are named {s.name!r} (from {first[s.name].source} and {s.source}); "
                "give each series its own file name or id"
            )
        first[s.name] = s


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


class MissingFeature(DataError):
    """A feature the model is to read was not sent (or not with one value per close)."""


def require_features(series: Series, names: Sequence[str]) -> None:
    """Every feature the model is to read is there, one value per close."""
    for name in names:
        values = series.features.get(name)
        if values is None:
            who = series.name or series.source
            raise MissingFeature(
                f"{who}: no {name} values; send features.{name} (JSON) or a {name} column (CSV), or drop it "
                "from features"
            )
        if len(values) != series.closes.size:
            raise MissingFeature(
                f"{series.name}: {name} has {len(values)} values for {series.closes.size} closes"
            )


class ConstantSeries(DataError):
    """The training part does not move, so its returns cannot be standardised."""


def check_trainable(series: Series, cfg: DataConfig) -> tuple[Split, Scaler]:
    """The split and the scaler fitted on the training part only, or a ``DataError`` saying why not.

    One check for the CLI (before it pays for ``import torch``), ``/train`` (before a job is queued) and
    training itself, so all three refuse the same data with the same words.
    """
    split = check_length(series, cfg)
    require_features(series, cfg.features)
    try:
        scaler = fit_scaler(log_returns(series.closes[: split.train_end]))  # no look-ahead
    except ValueError as exc:
        raise ConstantSeries(str(exc)) from None
    return split, scaler


def series_from_values(
    closes: list[float],
    dates: list[str] | None = None,
    source: str = "request",
    features: Mapping[str, Sequence[float]] | None = None,
) -> Series:
    """Validate closes (and features, one value per close) sent as JSON (``/train``) with the same rules and
    messages as the CSV reader."""
    values = [parse_close(str(v), f"closes[{i}]") for i, v in enumerate(closes)]
    extra = _feature_values(features or {}, len(values))
    if dates is None:
        return Series(np.asarray(values), None, source, "closes", None, len(values), 0, name=source,
                      features=extra)  # fmt: skip
    if len(dates) != len(values):
        raise DataError(
            f"dates has {len(dates)} values but closes has {len(values)}; send one date per close"
        )
    parsed = [parse_date(d, f"dates[{i}]") for i, d in enumerate(dates)]
    places = [f"dates[{i}]" for i in range(len(values))]
    order, ordered_dates, notes = order_by_date(list(range(len(values))), parsed, places)
    return Series(
        np.asarray(values)[order],
        iso_texts(ordered_dates),
        source,
        "closes",
        "dates",
        len(values),
        0,
        notes,
        source,
        features={k: v[order] for k, v in extra.items()},
    )


def _feature_values(features: Mapping[str, Sequence[float]], n: int) -> dict[str, npt.NDArray[np.float64]]:
    """``features.high`` etc. checked cell by cell like a CSV's columns, one value per close."""
    out = {}
    for name, values in features.items():
        if len(values) != n:
            raise DataError(
                f"features.{name} has {len(values)} values but closes has {n}; send one {name} per close"
            )
        out[name] = np.asarray(
            [parse_feature(name, str(v), f"features.{name}[{i}]") for i, v in enumerate(values)], np.float64
        )
    return out
