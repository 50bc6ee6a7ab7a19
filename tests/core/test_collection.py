"""Many series: files, directories and long format; one split by time across them; the data section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from closecast.collection import data_section, split_by_time, target_counts
from closecast.config import DataConfig
from closecast.series import DataError, Series, load_csv, load_many, make_split, series_from_values
from tests.synthetic import hourly_stamps, make_closes, write_csv, write_long_csv

CFG = DataConfig(window=11)


def _dated(name: str, start: str, n: int, seed: int = 0) -> Series:
    days = np.arange(np.datetime64(start), np.datetime64(start) + n)
    s = series_from_values(list(make_closes(n, seed=seed)), [str(d) for d in days], source=f"{name}.csv")
    s.name = name
    return s


def _targets(s: Series, start: int, stop: int) -> list[str]:
    assert s.dates is not None
    return s.dates[max(start, CFG.window) : stop]


def test_split_by_time_puts_every_test_target_after_every_training_target() -> None:
    # overlapping, staggered ranges: an old series, a recent one, one in between
    series = [
        _dated("old", "2010-01-01", 300),
        _dated("new", "2010-06-01", 250, 1),
        _dated("mid", "2010-03-01", 200, 2),
    ]
    splits = split_by_time(series, CFG)
    train = [t for s, sp in zip(series, splits, strict=True) for t in _targets(s, 0, sp.train_end)]
    val = [t for s, sp in zip(series, splits, strict=True) for t in _targets(s, sp.train_end, sp.val_end)]
    test = [t for s, sp in zip(series, splits, strict=True) for t in _targets(s, sp.val_end, sp.n)]
    assert max(train) < min(val) <= max(val) < min(test)
    total = len(train) + len(val) + len(test)
    assert total == sum(s.closes.size - CFG.window for s in series)  # every target in exactly one part
    assert abs(len(train) / total - CFG.train_frac) < 0.01 and abs(len(test) / total - 0.2) < 0.01


def test_a_series_before_the_cut_only_trains_and_one_after_only_tests() -> None:
    series = [
        _dated("long", "2000-01-01", 1000),
        _dated("early", "2000-01-01", 100),
        _dated("late", "2002-08-01", 60),
    ]
    counts = [target_counts(sp, CFG.window) for sp in split_by_time(series, CFG)]
    assert counts[1] == {"train": 89, "validation": 0, "test": 0}
    assert counts[2] == {"train": 0, "validation": 0, "test": 49}


def test_one_series_splits_exactly_as_before() -> None:
    assert split_by_time([_dated("a", "2020-01-01", 300)], CFG) == [make_split(300, CFG)]


def test_without_dates_each_series_splits_by_position() -> None:
    a, b = series_from_values(list(make_closes(300))), series_from_values(list(make_closes(120)))
    assert split_by_time([a, b], CFG) == [make_split(300, CFG), make_split(120, CFG)]


def test_a_series_too_short_for_one_forecast_is_refused_by_name() -> None:
    with pytest.raises(
        DataError, match=r"^tiny: only 8 usable closes; window 11 needs at least 12 in every series"
    ):
        split_by_time([_dated("a", "2020-01-01", 300), _dated("tiny", "2020-01-01", 8)], CFG)


def test_zoned_and_plain_series_are_refused_together() -> None:
    zoned = series_from_values(list(make_closes(100)), hourly_stamps(100, zone="Z"))
    zoned.name = "fx"
    with pytest.raises(DataError, match="series 'fx' has time zones but 'a' has none"):
        split_by_time([zoned, _dated("a", "2020-01-01", 300)], CFG)


def test_long_format_reads_one_series_per_id(tmp_path: Path) -> None:
    stamps = hourly_stamps(80)
    rows = [(sym, t, c) for sym in ("MSFT", "AAPL") for t, c in zip(stamps, make_closes(80), strict=True)]
    rows.sort(key=lambda r: r[1])  # interleaved by time, as exported long files are
    series = load_many([write_long_csv(tmp_path / "long.csv", rows)], id_column="symbol")
    assert [s.name for s in series] == ["AAPL", "MSFT"]
    assert all(s.closes.size == 80 and s.frequency == "1h" and s.id_column == "symbol" for s in series)


def test_long_format_messages_name_the_series(tmp_path: Path) -> None:
    rows = [("A", "2020-01-01", 1.0), ("B", "2020-01-01", 2.0), ("B", "2020-01-01", 3.0)]
    with pytest.raises(DataError, match=r"^B: line 4: Date is 2020-01-01, the same date as line 3: Date"):
        load_many([write_long_csv(tmp_path / "long.csv", rows)], id_column="symbol")


def test_missing_id_column_lists_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(30))
    with pytest.raises(DataError, match=r"id column 'symbol' not found in p.csv; columns are: Date, Close"):
        load_many([path], id_column="symbol")


def test_a_directory_reads_every_csv_sorted(tmp_path: Path) -> None:
    for name in ("b", "a"):
        write_csv(tmp_path / f"{name}.csv", make_closes(40))
    (tmp_path / "notes.txt").write_text("not a series")
    assert [s.name for s in load_many([tmp_path])] == ["a", "b"]


def test_several_files_prefix_messages_and_one_file_keeps_them(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", make_closes(40))
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Close\n2020-01-01,abc\n")
    with pytest.raises(DataError, match=r"^bad: line 2: Close is 'abc'; expected a number$"):
        load_many([good, bad])
    with pytest.raises(DataError, match=r"^line 2: Close is 'abc'; expected a number$"):
        load_many([bad])


def test_two_series_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    a = write_csv(tmp_path / "p.csv", make_closes(40))
    b = write_csv(tmp_path / "x" / "p.csv", make_closes(40))
    with pytest.raises(DataError, match="two series are named 'p'"):
        load_many([a, b])


def test_data_section_for_one_series_keeps_its_fields(tmp_path: Path) -> None:
    s = load_csv(write_csv(tmp_path / "p.csv", make_closes(300)))
    data = data_section([s], split_by_time([s], CFG))
    assert data["rows_used"] == 300 and data["frequency"] == "1d" and "series" not in data
    assert data["split"] == {"train": 210, "validation": 30, "test": 60, "test_start": 240}


def test_data_section_lists_every_series() -> None:
    series = [_dated("a", "2020-01-01", 300), _dated("b", "2020-03-01", 200, 1)]
    data = data_section(series, split_by_time(series, CFG))
    assert data["frequency"] == "1d" and data["split"]["by"] == "time"
    assert data["date_start"] == "2020-01-01" and data["date_end"] == "2020-10-26"
    assert [e["name"] for e in data["series"]] == ["a", "b"]
    entry = data["series"][1]
    assert {
        "name",
        "source",
        "rows",
        "rows_used",
        "date_start",
        "date_end",
        "frequency",
        "closes_sha256",
    } <= set(entry)
    assert entry["closes_sha256"] == series[1].sha256() and entry["split"]["test_start_date"] is not None
