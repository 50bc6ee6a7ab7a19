"""Timestamps of a series: parsing, one kind per series (naive or aware), ISO text, inferred frequency, and
the timestamps of the steps a forecast looks ahead.

Prices come at any frequency (minutes to years) and with gaps (weekends, holidays, FX's Friday close), so
the time axis is judged by what it holds, not by a calendar: duplicates on the full timestamp, order, and a
frequency named from the median spacing.
"""

from __future__ import annotations

import calendar
import itertools
import statistics
from collections.abc import Sequence
from datetime import datetime, time, timedelta

# Named steps, in seconds. A median spacing within ``NAMED_TOLERANCE`` of one takes its name.
NAMED_STEPS: dict[str, float] = {
    "1min": 60.0,
    "5min": 300.0,
    "15min": 900.0,
    "1h": 3600.0,
    "4h": 4 * 3600.0,
    "1d": 86400.0,
    "1w": 7 * 86400.0,
    "1mo": 30.4375 * 86400.0,
    "1q": 91.3125 * 86400.0,
    "1y": 365.25 * 86400.0,
}
NAMED_TOLERANCE = 0.2  # relative: 28- to 31-day months are all "1mo"; 4-minute bars are "5min"
REGULAR_SHARE = 0.5  # at least half the spacings within the tolerance of the median, else "irregular"
IRREGULAR = "irregular"
MIXED = "mixed"


class TimestampError(ValueError):
    """A timestamp cannot be read or does not fit with the others; the message names the cell."""


def parse_timestamp(text: str, where: str) -> datetime:
    """An ISO date or date-time, with or without a time zone (``Z``, ``+02:00``).

    ``where`` names the cell in messages: ``line 7: Date`` for a CSV, ``dates[5]`` for JSON.
    """
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimestampError(
            f"{where} is {text!r}; expected an ISO date or time such as 2018-12-31 or 2018-12-31T09:30:00Z"
        ) from None


def check_one_kind(stamps: Sequence[datetime], places: Sequence[str]) -> None:
    """Refuse a series mixing times with and without a time zone: they cannot be ordered against each other.

    Refused rather than read as UTC, because a naive time is as often local exchange time as UTC and a
    silent guess would shift every close by hours.
    """
    if not stamps:
        return
    aware = stamps[0].tzinfo is not None
    for stamp, place in zip(stamps, places, strict=True):
        if (stamp.tzinfo is not None) != aware:
            have, lack = (places[0], place) if aware else (place, places[0])
            raise TimestampError(
                f"{have} has a time zone but {lack} has none; give every timestamp a zone "
                "(such as Z or +02:00) or none"
            )


def is_date_only(stamps: Sequence[datetime]) -> bool:
    """All at midnight without a zone: written as plain dates (``2018-12-31``), as daily files always were."""
    return all(s.tzinfo is None and s.time() == time(0) for s in stamps)


def iso_texts(stamps: Sequence[datetime]) -> list[str]:
    """ISO text for each timestamp: plain dates when every one is a naive midnight, else full times."""
    if is_date_only(stamps):
        return [s.date().isoformat() for s in stamps]
    return [s.isoformat() for s in stamps]


def iso_text(stamp: datetime, date_only: bool) -> str:
    return stamp.date().isoformat() if date_only else stamp.isoformat()


def infer_frequency(stamps: Sequence[datetime]) -> str | None:
    """The step between closes, named from the median spacing: "1h", "1d", ... or "irregular".

    Gaps (weekends, holidays, FX's weekend) are normal: they move the median little. A regular step that has
    no name (30 minutes, 2 days) is written as a count of the largest whole unit ("30min", "2d"). ``None``
    when there are fewer than two timestamps.
    """
    if len(stamps) < 2:
        return None
    spacings = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    median = statistics.median(spacings)
    if median <= 0:
        return IRREGULAR
    near = sum(1 for s in spacings if abs(s - median) <= NAMED_TOLERANCE * median)
    if near < REGULAR_SHARE * len(spacings):
        return IRREGULAR
    for name, seconds in NAMED_STEPS.items():
        if abs(median - seconds) <= NAMED_TOLERANCE * seconds:
            return name
    return _count_of_unit(median)


def _count_of_unit(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def common_frequency(frequencies: Sequence[str | None]) -> str | None:
    """The one frequency all series share, ``None`` when none has dates, else "mixed"."""
    known = {f for f in frequencies if f is not None}
    if not known:
        return None
    return known.pop() if len(known) == 1 and None not in frequencies else MIXED


DAY = 86400.0
MONTH_DAYS = 30.4375


def next_stamps(stamps: Sequence[datetime], horizon: int) -> list[datetime]:
    """The ``horizon`` timestamps after the last one, stepping as the series steps (no holiday calendar).

    The step is the median spacing. Monthly and longer series step by whole calendar months (month-ends stay
    month-ends); weekly and multi-day ones by whole days; daily ones day by day through the weekdays seen in
    ``stamps`` (a Monday-to-Friday series skips weekends, a crypto series does not); intraday ones by their
    step through the (weekday, time of day) slots seen, so an hourly FX series skips its weekend and a
    session's closed hours. Weekdays are read only from dates spanning a week, times of day only from dates
    spanning a day: a shorter span steps plainly. Needs two timestamps (``TimestampError`` otherwise).
    """
    if len(stamps) < 2:
        raise TimestampError("dates needs at least 2 timestamps to tell the step; send one per close")
    median = statistics.median((b - a).total_seconds() for a, b in itertools.pairwise(stamps))
    last = stamps[-1]
    if median >= 25 * DAY:
        months = max(1, round(median / (MONTH_DAYS * DAY)))
        month_ends = all(_is_month_end(s) for s in stamps)
        return [_add_months(last, months * k, month_ends) for k in range(1, horizon + 1)]
    if median >= 1.5 * DAY:
        return [last + timedelta(days=round(median / DAY) * k) for k in range(1, horizon + 1)]
    step = timedelta(days=1) if median >= 0.8 * DAY else timedelta(seconds=max(1.0, round(median)))
    span = last - stamps[0]
    # the week's pattern only from a week of dates, the day's only from a day: fewer show too little of it
    by_weekday, by_time = span >= timedelta(days=7), step < timedelta(days=1) and span >= timedelta(days=1)
    slots = {_slot(s, by_weekday, by_time) for s in stamps}
    out: list[datetime] = []
    current = last
    tries = max(7, round(7 * DAY / step.total_seconds()))  # a week of steps finds any slot seen
    for _ in range(horizon):
        candidate = current + step
        for _ in range(tries):
            if _slot(candidate, by_weekday, by_time) in slots:
                break
            candidate += step
        else:
            candidate = current + step  # no slot seen fits this phase: plain step
        out.append(candidate)
        current = candidate
    return out


def _slot(stamp: datetime, by_weekday: bool, by_time: bool) -> tuple[int | None, time | None]:
    """Where a stamp falls in the week: its weekday and time of day, each when the dates sent show it."""
    return (stamp.weekday() if by_weekday else None), (stamp.timetz() if by_time else None)


def _is_month_end(stamp: datetime) -> bool:
    return (stamp + timedelta(days=1)).month != stamp.month


def _add_months(stamp: datetime, months: int, month_end: bool) -> datetime:
    index = stamp.month - 1 + months
    year, month = stamp.year + index // 12, index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    return stamp.replace(year=year, month=month, day=last_day if month_end else min(stamp.day, last_day))
