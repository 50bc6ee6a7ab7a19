"""Format 2's out-of-range check (numpy only): the last moves of a request, in its own volatility units.

Format 2 sees no price level and no volatility, so "beyond the training range" (format 1's check on raw
returns) means nothing to it: a calm FX hour and a wild crypto day look alike. What it has not seen is a
move far outside the series' *own* recent volatility: a -70% day on a stock that moves 2% a day is 60 of its
own units, and the network, the interval scale and the quantile tables were all made on residuals that
almost never go beyond 8.

The check: each of the last ``RECENT`` returns sent, divided by a *reference scale* measured on the returns
before them (so a crash does not hide inside a scale it inflated itself). A request that sends at least
``EWMA_MIN_RETURNS`` returns (the ``ewma`` table's requests) is read over its history (up to 252 returns): the
EWMA of the returns before the last ``RECENT`` when there are ``EWMA_MIN_RETURNS`` of them, else their RMS; a
shorter request over its input window alone (the RMS of the window's returns before the last ``RECENT``), so
a series gets the same answer alone and in any batch. A move beyond
``EXTREME_UNITS`` reference scales gets a warning. Why 8: under a Student-t(4) with unit standard deviation
(the heavy-tailed shape of the fallback table) a move beyond 8 has probability 3.5e-4; on the S&P 500
(1999-2018) and MSFT (1986-2017) daily histories 7 of 12,410 days went beyond 8 of the EWMA before them (the
largest: 8.5 on the S&P in 2008, 17.1 on MSFT on 1987-10-19). A warning on about one day in 1,800 of a real
daily stock says something; one at 4 (53 of those days) would be noise. A reference scale of zero (every
earlier return zero) is left to the flat-window warning.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import numpy.typing as npt

from closecast.intervals import EWMA_MIN_RETURNS, EWMA_WEIGHT_SUMS, EWMA_WEIGHTS, F64
from closecast.representation import FLAT_EPS
from closecast.results import InputWarning

EXTREME_UNITS = 8.0  # a move beyond this many reference scales is out of range
MARGIN = 1e-9  # relative: the one-series path leaves anything this close to the limit to the batch path
RECENT = 5  # the last moves checked


def extreme_ratios(returns: F64, counts: npt.NDArray[np.int64]) -> F64:
    """Returns ``[N, L]`` right-aligned (zeros before ``counts [N]`` real ones) -> ``[N, RECENT]``: each of
    the last ``RECENT`` returns over the reference scale of the returns before them (0 where a series sent
    too few returns to have a reference, or the reference is zero)."""
    r = np.asarray(returns, dtype=np.float64)
    before, recent = r[:, :-RECENT], r[:, -RECENT:]
    n_before = np.asarray(counts, dtype=np.int64) - RECENT
    squares = before * before
    weights = EWMA_WEIGHTS[-before.shape[1] :] if before.shape[1] else EWMA_WEIGHTS[:0]
    ewma = np.sqrt(np.sum(squares * weights, axis=-1) / EWMA_WEIGHT_SUMS[np.clip(n_before, 1, None) - 1])
    rms = np.sqrt(np.sum(squares, axis=-1) / np.maximum(n_before, 1))
    reference = np.where(n_before >= EWMA_MIN_RETURNS, ewma, rms)
    usable = (n_before >= 2) & (reference > FLAT_EPS)
    return np.where(
        usable[:, np.newaxis], np.abs(recent) / np.where(usable, reference, 1.0)[:, np.newaxis], 0.0
    )


def request_ratios(window: F64, history: F64 | None, counts: npt.NDArray[np.int64]) -> F64:
    """``extreme_ratios`` of a request, whatever else is in its batch: a series that sent at least
    ``EWMA_MIN_RETURNS`` returns is read from its history ``[N, EWMA_SPAN]`` (the EWMA table's series), any
    other from its input window's returns ``[N, W-1]`` alone, as the interval scale is."""
    counts = np.asarray(counts, dtype=np.int64)
    use_history = counts >= EWMA_MIN_RETURNS
    if history is not None and use_history.all():  # one series with history (most requests): one pass
        return extreme_ratios(history, counts)
    ratios = extreme_ratios(window, np.minimum(counts, window.shape[1]))
    if history is not None and use_history.any():
        ratios = np.where(use_history[:, np.newaxis], extreme_ratios(history, counts), ratios)
    return ratios


def max_ratio_one(returns: F64, window: F64) -> float:
    """The largest of ``request_ratios`` for one series, cheaply (a dot product, no ``[1, EWMA_SPAN]`` row):
    ``returns`` are the (at most ``EWMA_SPAN``) returns it sent, ``window`` its input window's returns. Equal
    to the batch path's value up to rounding in the last bits, so a caller compares it with a margin."""
    r = returns if returns.size >= EWMA_MIN_RETURNS else window
    n = r.size - RECENT
    if n < 2:
        return 0.0
    before = r[:n]
    if n >= EWMA_MIN_RETURNS:
        weighted = float(np.dot(before * before, EWMA_WEIGHTS[-n:]))
        reference = math.sqrt(weighted / float(EWMA_WEIGHT_SUMS[n - 1]))
    else:
        reference = math.sqrt(float(np.dot(before, before)) / n)
    if not reference > FLAT_EPS:
        return 0.0
    return float(np.max(np.abs(r[n:]))) / reference


def extreme_warnings(
    window: F64, history: F64 | None, counts: npt.NDArray[np.int64], lengths: list[int]
) -> list[list[InputWarning]]:
    """One ``extreme_move`` warning per move beyond ``EXTREME_UNITS`` (``lengths[i]``: closes series i sent,
    to name the move by its index)."""
    out: list[list[InputWarning]] = [[] for _ in lengths]
    ratios = request_ratios(window, history, counts)
    if not (ratios > EXTREME_UNITS).any():  # the common case: one comparison
        return out
    recent = np.asarray(window, dtype=np.float64)[:, -RECENT:]
    for i, j in zip(*np.nonzero(ratios > EXTREME_UNITS), strict=True):
        end = lengths[i] - RECENT + int(j)  # index of the close the move ends on
        move = _percent(float(recent[i, j]))
        out[i].append(
            InputWarning(
                "extreme_move",
                f"closes[{end - 1}]→closes[{end}] moved {move}, {ratios[i, j]:.0f} times the "
                f"series' typical move before it (more than {EXTREME_UNITS:g}); the model and its intervals "
                "were not made for such a move: treat this forecast with care",
            )
        )
    return out


def _percent(log_return: float) -> str:
    """A move in percent, or, where the price rose more than a float can say in percent (a log return beyond
    ~709, e.g. from 1e-300 to 1e300), as the power of e it rose by."""
    if log_return > math.log(sys.float_info.max / 100):
        return f"by a factor of e^{log_return:.0f}"
    return f"{100 * math.expm1(log_return):+.1f}%"
