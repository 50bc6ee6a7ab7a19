"""Small deterministic price series for tests: a geometric random walk, by default with a weekly rhythm.

The rhythm gives a tiny model something learnable in a few epochs; without it (``random_walk``) the fixture
model's learned rhythm is noise. The level is a parameter so tests can check that nothing depends on it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def make_closes(
    n: int = 400,
    level: float = 100.0,
    seed: int = 0,
    rhythm: float = 0.004,
    drift: float = 0.0002,
    volatility: float = 0.006,
) -> np.ndarray:
    """``n`` closes from ``level``: daily log returns of ``rhythm`` * a 5-day sine plus normal noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n - 1)
    returns = rhythm * np.sin(2 * np.pi * t / 5) + rng.normal(drift, volatility, n - 1)
    return level * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def random_walk(n: int = 300, seed: int = 1) -> np.ndarray:
    """A geometric random walk with no rhythm: the fixture model's learned weekly rhythm is noise here."""
    return make_closes(n, seed=seed, rhythm=0.0)


def calm_walk(n: int = 40, level: float = 100.0, seed: int = 1) -> list[float]:
    """A calm random walk (moves well inside the fixture model's training range), as JSON-ready floats."""
    return make_closes(n, level, seed, rhythm=0.0, drift=0.0, volatility=0.003).tolist()


def write_csv(path: Path, closes: np.ndarray, start: str = "2020-01-01", column: str = "Close") -> Path:
    dates = np.arange(np.datetime64(start), np.datetime64(start) + closes.size)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Date", column])
        w.writerows([str(d), f"{c:.6f}"] for d, c in zip(dates, closes, strict=True))
    return path


def hourly_stamps(
    n: int, start: str = "2017-04-17T00:00:00", zone: str = "", weekends: bool = False
) -> list[str]:
    """``n`` hourly ISO timestamps, skipping Saturdays and Sundays unless ``weekends`` (FX-like gaps)."""
    out: list[str] = []
    t = np.datetime64(start, "h")
    while len(out) < n:
        weekday = int((t.astype("datetime64[D]").astype(int) + 3) % 7)  # 0 = Monday
        if weekends or weekday < 5:
            out.append(str(t.astype("datetime64[s]")) + zone)
        t += np.timedelta64(1, "h")
    return out


def write_long_csv(path: Path, rows: list[tuple[str, str, float]], id_column: str = "symbol") -> Path:
    """A long-format CSV: one row per (id, timestamp, close)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([id_column, "Date", "Close"])
        w.writerows([i, d, f"{c:.6f}"] for i, d, c in rows)
    return path


def write_ohlcv_csv(
    path: Path, n: int = 300, level: float = 100.0, seed: int = 3, scale: float = 1.0
) -> Path:
    """``Date,Open,High,Low,Close,Volume`` rows: ``make_closes`` (log returns times ``scale``), highs and lows
    around each close (log ranges times ``scale`` too), and volumes (some zero)."""
    rng = np.random.default_rng(seed)
    returns = np.diff(np.log(make_closes(n, 1.0, seed)))
    close = level * np.exp(scale * np.concatenate([[0.0], np.cumsum(returns)]))
    high = close * np.exp(scale * np.abs(rng.normal(0, 0.004, n)))
    low = close * np.exp(-scale * np.abs(rng.normal(0, 0.004, n)))
    open_ = close * np.exp(scale * rng.normal(0, 0.002, n))
    volume = np.round(1e6 * np.exp(rng.normal(0, 0.4, n)))
    volume[::50] = 0
    dates = np.datetime64("2020-01-01") + np.arange(n)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Date", "Open", "High", "Low", "Close", "Volume"])
        for row in zip(dates.astype(str), open_, high, low, close, volume, strict=True):
            writer.writerow([row[0], *(repr(float(v)) for v in row[1:])])
    return path
