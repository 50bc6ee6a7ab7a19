"""Shared by the bench scripts that time requests: the median and the 99th percentile of a list of timings."""

from __future__ import annotations

from collections.abc import Sequence


def percentiles(xs: Sequence[float]) -> tuple[float, float]:
    """``(p50, p99)`` as order statistics of ``xs`` (no interpolation: each is a timing that happened)."""
    if not xs:
        raise ValueError("percentiles of no timings; time at least one request")
    ordered = sorted(xs)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
