"""The model-ready parts of a series: validated closes + config -> train, validation and test parts, each
with its price windows, scaled model inputs and targets (the scaler fitted on the training part only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from closecast.collection import split_by_time
from closecast.config import DataConfig
from closecast.representation import Scaler, fit_scaler, log_returns, model_inputs
from closecast.series import ConstantSeries, Series, Split, check_trainable, windows

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Part:
    """One part of the split: price windows, model inputs and targets."""

    closes: F64  # [N, window] the input closes
    actual: F64  # [N] the close to forecast
    x: F32  # [N, window-1, 1] scaled returns
    y: F32  # [N, 1] scaled next return

    @property
    def last(self) -> F64:
        """The naive forecast: the last known close."""
        return self.closes[:, -1]


@dataclass(frozen=True)
class Prepared:
    """The three parts of one chronological split and the scaler fitted on the first."""

    split: Split
    scaler: Scaler
    train: Part
    validation: Part
    test: Part
    splits: list[Split] = field(default_factory=list)  # one per series, in the order given


def _part(closes: F64, start: int, stop: int, window: int, scaler: Scaler) -> Part:
    w, actual = windows(closes, start, stop, window)
    y = scaler.transform(np.log(actual / w[:, -1]))[:, np.newaxis].astype(np.float32)
    return Part(closes=np.ascontiguousarray(w), actual=actual, x=model_inputs(w, scaler), y=y)


def prepare(series: Series | Sequence[Series], cfg: DataConfig) -> Prepared:
    """Split chronologically, fit the scaler on the training closes only, and build the windows.

    Several series are split by time together (``closecast.collection.split_by_time``) and their windows
    pooled, each part in series order; one series splits exactly as it always did.
    """
    many = [series] if isinstance(series, Series) else list(series)
    if len(many) == 1:
        split, scaler = check_trainable(many[0], cfg)  # scaler fitted on the training part only
        splits = [split]
    else:
        splits = split_by_time(many, cfg)
        train_returns = [log_returns(s.closes[: sp.train_end]) for s, sp in zip(many, splits, strict=True)]
        try:
            scaler = fit_scaler(np.concatenate(train_returns))
        except ValueError as exc:
            raise ConstantSeries(str(exc)) from None
    pieces = [_parts(s.closes, sp, cfg.window, scaler) for s, sp in zip(many, splits, strict=True)]
    train, validation, test = (_pooled([p[i] for p in pieces]) for i in range(3))
    return Prepared(splits[0], scaler, train, validation, test, splits)


def _parts(closes: F64, split: Split, window: int, scaler: Scaler) -> tuple[Part, Part, Part]:
    return (
        _part(closes, 0, split.train_end, window, scaler),
        _part(closes, split.train_end, split.val_end, window, scaler),
        _part(closes, split.val_end, split.n, window, scaler),
    )


def _pooled(parts: list[Part]) -> Part:
    if len(parts) == 1:
        return parts[0]
    return Part(
        closes=np.concatenate([p.closes for p in parts]),
        actual=np.concatenate([p.actual for p in parts]),
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
    )
