"""What a forecaster answers: per series (``SeriesForecast``, ``BatchForecast``) or, for a batch formatted
all at once, the price table as the arrays left it (``PriceRows``).

A batch's prices come out of numpy as one ``[N, 1+2L, H]`` array; ``PriceRows`` keeps them as the nested
lists of one ``tolist`` call, so a caller that writes many series (``/forecast/batch``) builds its answer
straight from them instead of first making one object per series and then reading each back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class InputWarning:
    """Something about the input the model was not trained for; ``kind`` labels the metrics counter."""

    kind: str
    message: str


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, paid per series of a batch
class SeriesForecast:
    """One series' answer, JSON-ready lists: prices per step, ``intervals[level] = (lower, upper)``."""

    forecast: list[float]
    intervals: dict[int, tuple[list[float], list[float]]]
    last_close: float
    warnings: list[InputWarning] = field(default_factory=list)


@dataclass(frozen=True)
class BatchForecast:
    items: list[SeriesForecast]
    inference_s: float  # time spent inside ONNX Runtime, all steps


@dataclass(slots=True)
class PriceRows:
    """A batch's answer in one table: ``rows[i]`` is series i's ``[1+2L][H]`` prices (the forecast, then
    the lower and upper bound of each level), ``levels`` the ``(row of the lower bound, level)`` pairs."""

    rows: list[list[list[float]]]
    last_closes: list[float]
    warnings: list[list[InputWarning]]  # per series, the level notes included
    levels: tuple[tuple[int, int], ...]
    inference_s: float  # time spent inside ONNX Runtime, all steps
    # the ``[N, 1+2L, H]`` array ``rows`` was listed from, where the batch path made one (binary answers
    # write it out as it is rather than turn the lists back into an array)
    prices: npt.NDArray[np.float64] | None = None

    def array(self) -> npt.NDArray[np.float64]:
        """The table as one ``[N, 1+2L, H]`` float64 array."""
        return self.prices if self.prices is not None else np.asarray(self.rows, dtype=np.float64)

    def items(self) -> list[SeriesForecast]:
        """The same answers, one object per series."""
        return [
            SeriesForecast(
                forecast=row[0],
                intervals={level: (row[k], row[k + 1]) for k, level in self.levels},
                last_close=last,
                warnings=warnings,
            )
            for row, last, warnings in zip(self.rows, self.last_closes, self.warnings, strict=True)
        ]

    def batch(self) -> BatchForecast:
        return BatchForecast(self.items(), self.inference_s)

    @classmethod
    def of(cls, result: BatchForecast, levels: Sequence[int]) -> PriceRows:
        """The table of per-series answers (format 1's batch path, which makes them)."""
        rows = [
            [item.forecast, *(bound for level in levels for bound in item.intervals[level])]
            for item in result.items
        ]
        pairs = tuple((1 + 2 * k, level) for k, level in enumerate(levels))
        lasts, warnings = [i.last_close for i in result.items], [i.warnings for i in result.items]
        return cls(rows, lasts, warnings, pairs, result.inference_s)

    @classmethod
    def joined(cls, parts: Sequence[tuple[Sequence[int], PriceRows]], size: int) -> PriceRows:
        """Tables of disjoint subsets of a batch (``(indices, table)``) as one table in the batch's order."""
        if len(parts) == 1:
            return parts[0][1]
        rows: list[list[list[float]]] = [[] for _ in range(size)]
        lasts = [0.0] * size
        warnings: list[list[InputWarning]] = [[] for _ in range(size)]
        for members, part in parts:
            for j, i in enumerate(members):
                rows[i], lasts[i], warnings[i] = part.rows[j], part.last_closes[j], part.warnings[j]
        inference_s = sum(part.inference_s for _, part in parts)
        return cls(rows, lasts, warnings, parts[0][1].levels, inference_s)
