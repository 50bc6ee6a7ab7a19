"""Dates sent beside closes (``/forecast``, ``/forecast/batch``, ``/backtest``): checked by the training
rules, and stepped forward into the dates of the forecast's steps."""

from __future__ import annotations

from collections.abc import Sequence

from closecast.errors import InputInvalid, Loc, Problem
from closecast.series import DataError, series_from_values
from closecast.timeaxis import TimestampError, is_date_only, iso_text, next_stamps, parse_timestamp


def checked_dates(closes: Sequence[float], dates: Sequence[str] | None, loc: Loc) -> list[str] | None:
    """The dates as the training CLI reads them (ISO, one per close, ascending), or a 422 at ``loc``."""
    if dates is None:
        return None
    try:
        series = series_from_values(list(closes), list(dates))
    except DataError as exc:
        raise InputInvalid([Problem(loc, str(exc), "dates_invalid", None)]) from None
    if series.notes:  # newest first would reorder the closes the caller meant
        raise InputInvalid(
            [Problem(loc, "dates are newest first; send closes and dates oldest first",
                     "dates_not_ascending", None)]
        )  # fmt: skip
    assert series.dates is not None  # dates were sent
    return series.dates


def forecast_dates(closes: Sequence[float], dates: Sequence[str], horizon: int, loc: Loc) -> list[str]:
    """One date per forecast step after the last one sent, in the form the dates came in."""
    texts = checked_dates(closes, dates, loc) or []
    stamps = [parse_timestamp(text, f"dates[{i}]") for i, text in enumerate(texts)]
    try:
        ahead = next_stamps(stamps, horizon)
    except TimestampError as exc:
        raise InputInvalid([Problem(loc, str(exc), "dates_invalid", None)]) from None
    date_only = is_date_only(stamps)
    return [iso_text(stamp, date_only) for stamp in ahead]
