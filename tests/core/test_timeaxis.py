"""Timestamps at any frequency: parsing, zones, duplicates on the full time, the inferred frequency."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from closecast.series import DataError, load_csv, series_from_values
from closecast.timeaxis import TimestampError, common_frequency, infer_frequency, next_stamps
from tests.synthetic import hourly_stamps, make_closes


def _every(step: timedelta, n: int = 50, start: datetime = datetime(2020, 1, 6)) -> list[datetime]:
    return [start + i * step for i in range(n)]


def _business_days(n: int) -> list[datetime]:
    return [d for d in _every(timedelta(days=1), n * 2) if d.weekday() < 5][:n]


def _month_starts(n: int, months: int = 1) -> list[datetime]:
    return [datetime(2000 + (i * months) // 12, 1 + (i * months) % 12, 1) for i in range(n)]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (_every(timedelta(minutes=1)), "1min"),
        (_every(timedelta(minutes=5)), "5min"),
        (_every(timedelta(minutes=15)), "15min"),
        ([datetime.fromisoformat(t) for t in hourly_stamps(300)], "1h"),  # with weekend gaps
        (_every(timedelta(hours=4)), "4h"),
        (_business_days(200), "1d"),  # weekends are normal gaps
        (_every(timedelta(weeks=1)), "1w"),
        (_month_starts(40), "1mo"),  # 28- to 31-day spacings
        (_month_starts(40, 3), "1q"),
        ([datetime(1990 + i, 12, 31) for i in range(30)], "1y"),
        (_every(timedelta(minutes=30)), "30min"),  # regular but unnamed: a count of a whole unit
        (_every(timedelta(days=2)), "2d"),
        ([datetime(2020, 1, 1) + timedelta(minutes=7 * i * i) for i in range(60)], "irregular"),
        (_every(timedelta(days=1), 1), None),
    ],
)
def test_frequency_is_named_from_the_median_spacing(stamps: list[datetime], expected: str | None) -> None:
    assert infer_frequency(stamps) == expected


def test_common_frequency_is_mixed_when_series_differ() -> None:
    assert common_frequency(["1h", "1h"]) == "1h"
    assert common_frequency(["1h", "1d"]) == "mixed"
    assert common_frequency(["1h", None]) == "mixed"
    assert common_frequency([None, None]) is None


def _write(path: Path, stamps: list[str]) -> Path:
    closes = make_closes(len(stamps))
    path.write_text("Date,Close\n" + "".join(f"{d},{c:.4f}\n" for d, c in zip(stamps, closes, strict=True)))
    return path


def test_times_of_day_parse_and_keep_their_time(tmp_path: Path) -> None:
    series = load_csv(_write(tmp_path / "fx.csv", [t.replace("T", " ") for t in hourly_stamps(100)]))
    assert series.closes.size == 100  # not cut to the day and refused as duplicates
    assert series.dates is not None and series.dates[:2] == ["2017-04-17T00:00:00", "2017-04-17T01:00:00"]
    assert series.frequency == "1h" and series.name == "fx"


def test_zones_parse_and_plain_dates_stay_plain(tmp_path: Path) -> None:
    zoned = load_csv(_write(tmp_path / "z.csv", hourly_stamps(30, zone="Z")))
    assert zoned.dates is not None and zoned.dates[0] == "2017-04-17T00:00:00+00:00"
    offset = series_from_values([1.0, 2.0], ["2017-04-19T09:00:00+02:00", "2017-04-19T08:00:00Z"])
    assert offset.dates == ["2017-04-19T09:00:00+02:00", "2017-04-19T08:00:00+00:00"]  # 07:00Z < 08:00Z
    daily = series_from_values([1.0, 2.0], ["2020-01-02", "2020-01-03"])
    assert daily.dates == ["2020-01-02", "2020-01-03"] and daily.frequency == "1d"


def test_duplicate_timestamps_are_refused_naming_the_line(tmp_path: Path) -> None:
    stamps = [t.replace("T", " ") for t in hourly_stamps(40)]
    stamps[9] = stamps[8]
    with pytest.raises(DataError) as err:
        load_csv(_write(tmp_path / "fx.csv", stamps))
    assert str(err.value) == (
        "line 11: Date is 2017-04-17T08:00:00, the same timestamp as line 10: Date; "
        "keep one row per timestamp"
    )


def test_the_same_instant_in_two_zones_is_a_duplicate() -> None:
    with pytest.raises(DataError, match=r"dates\[1\] is 2017-04-19T07:00:00\+00:00, the same timestamp"):
        series_from_values([1.0, 2.0], ["2017-04-19T09:00:00+02:00", "2017-04-19T07:00:00Z"])


def test_mixed_zoned_and_plain_times_are_refused(tmp_path: Path) -> None:
    stamps = hourly_stamps(30, zone="Z")
    stamps[5] = stamps[5].removesuffix("Z")
    with pytest.raises(DataError) as err:
        load_csv(_write(tmp_path / "fx.csv", stamps))
    assert str(err.value).startswith("line 2: Date has a time zone but line 7: Date has none;")


def test_unreadable_timestamp_quotes_the_cell(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 3: Date is '19/04/2017'; expected an ISO date or time"):
        load_csv(_write(tmp_path / "p.csv", ["2017-04-18", "19/04/2017", "2017-04-20"]))


# --- the dates of a forecast's steps ------------------------------------------------------------------------


def _kept(start: datetime, step: timedelta, n: int, keep: Callable[[datetime], bool]) -> list[datetime]:
    """The first ``n`` of ``start + i * step`` that ``keep`` keeps."""
    stamps = (start + step * i for i in range(n * 24))
    return [s for s in stamps if keep(s)][:n]


def _fx_closed(h: datetime) -> bool:
    """Friday 22:00 to Sunday 22:00 UTC."""
    return h.weekday() == 5 or (h.weekday() == 6 and h.hour < 22) or (h.weekday() == 4 and h.hour >= 22)


def _session(h: datetime) -> bool:
    return h.weekday() < 5 and 9 <= h.hour <= 16


def test_daily_weekday_series_step_over_the_weekend() -> None:
    days = _kept(datetime(2024, 1, 1), timedelta(days=1), 30, lambda d: d.weekday() < 5)
    assert days[-1] == datetime(2024, 2, 9)  # a Friday
    assert next_stamps(days, 3) == [datetime(2024, 2, 12), datetime(2024, 2, 13), datetime(2024, 2, 14)]


def test_a_seven_day_series_steps_every_day() -> None:
    days = _kept(datetime(2024, 1, 1), timedelta(days=1), 30, lambda d: True)
    assert next_stamps(days, 2) == [days[-1] + timedelta(days=1), days[-1] + timedelta(days=2)]


def test_hourly_fx_skips_its_weekend_and_keeps_its_zone() -> None:
    hours = _kept(datetime(2024, 1, 1, tzinfo=UTC), timedelta(hours=1), 24 * 12, lambda h: not _fx_closed(h))
    last = datetime(2024, 1, 12, 21, tzinfo=UTC)  # Friday 21:00, the last open hour
    hours = [h for h in hours if h <= last]
    sunday = datetime(2024, 1, 14, tzinfo=UTC)
    assert next_stamps(hours, 2) == [sunday.replace(hour=22), sunday.replace(hour=23)]


def test_a_session_series_steps_to_the_next_open_hour() -> None:
    hours = _kept(datetime(2024, 1, 1), timedelta(hours=1), 8 * 10, _session)
    assert hours[-1] == datetime(2024, 1, 12, 16)
    assert next_stamps(hours, 2) == [datetime(2024, 1, 15, 9), datetime(2024, 1, 15, 10)]


def test_month_ends_stay_month_ends_and_weekly_steps_a_week() -> None:
    ends = [datetime(2023, m, calendar.monthrange(2023, m)[1]) for m in range(1, 13)]
    assert next_stamps(ends, 3) == [datetime(2024, 1, 31), datetime(2024, 2, 29), datetime(2024, 3, 31)]
    fridays = [datetime(2024, 1, 5) + timedelta(weeks=i) for i in range(10)]
    assert next_stamps(fridays, 2) == [datetime(2024, 3, 15), datetime(2024, 3, 22)]


def test_a_span_shorter_than_a_week_steps_plainly() -> None:
    two = [datetime(2024, 1, 2, 10, tzinfo=UTC), datetime(2024, 1, 2, 11, tzinfo=UTC)]
    assert next_stamps(two, 2) == [two[1] + timedelta(hours=1), two[1] + timedelta(hours=2)]


def test_one_timestamp_cannot_tell_the_step() -> None:
    with pytest.raises(TimestampError, match="at least 2"):
        next_stamps([datetime(2024, 1, 2)], 1)
