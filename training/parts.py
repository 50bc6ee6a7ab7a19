"""The model-ready parts of a series: validated closes + config -> train, validation and test parts, each
with its price windows, scaled model inputs and targets (the scaler fitted on the training part only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closecast.config import DataConfig
from closecast.representation import Scaler, model_inputs
from closecast.series import Series, Split, check_trainable, windows

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


def _part(closes: F64, start: int, stop: int, window: int, scaler: Scaler) -> Part:
    w, actual = windows(closes, start, stop, window)
    y = scaler.transform(np.log(actual / w[:, -1]))[:, np.newaxis].astype(np.float32)
    return Part(closes=np.ascontiguousarray(w), actual=actual, x=model_inputs(w, scaler), y=y)


def prepare(series: Series, cfg: DataConfig) -> Prepared:
    """Split chronologically, fit the scaler on the training closes only, and build the windows."""
    split, scaler = check_trainable(series, cfg)  # scaler fitted on the training part only
    closes = series.closes
    return Prepared(
        split=split,
        scaler=scaler,
        train=_part(closes, 0, split.train_end, cfg.window, scaler),
        validation=_part(closes, split.train_end, split.val_end, cfg.window, scaler),
        test=_part(closes, split.val_end, split.n, cfg.window, scaler),
    )
