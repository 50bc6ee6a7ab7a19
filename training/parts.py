"""Format 2's training data: every series split into four slices, windows pooled across series.

Slices by the index of the close being forecast (the target), per series: training ``[window, train_end)``,
early stopping ``[train_end, cal_start)``, calibration ``[cal_start, val_end)``, test ``[val_end, n)``.
``train_end``/``val_end`` come from ``closecast.collection.split_by_time``: one series (or several without
dates) by position, 0.70 / 0.80 with the default 0.7 + 0.1; several with dates at common timestamps, so no
test target is earlier than any training target in any series. ``cal_start`` halves each series'
validation part (0.75). Early stopping and interval calibration thus never see the same residuals, so the
calibration residuals are honest out-of-sample errors. Flat windows (every return zero) are left out of
training, early stopping and calibration; the test slice keeps them (serving answers them too).

Augmentation series (synthetic) give training windows only: they never early-stop, calibrate or score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.collection import split_by_time
from closecast.config import DataConfig
from closecast.features import FeatureScaler, fit_feature_scaler, raw_channels
from closecast.representation import WindowScaler, fit_window_scaler, log_returns, window_rms
from closecast.series import Series, Split, require_features, windows

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
SLICES = ("train", "early_stop", "calibration", "test")


def slice_bounds(split: Split, window: int) -> dict[str, tuple[int, int]]:
    """Target ranges of the four slices; calibration is the second half of the validation part."""
    cal_start = split.train_end + (split.val_end - split.train_end) // 2
    return {
        "train": (window, split.train_end),
        "early_stop": (split.train_end, cal_start),
        "calibration": (cal_start, split.val_end),
        "test": (split.val_end, split.n),
    }


@dataclass(frozen=True)
class Windows:
    """One slice of one series: input windows, targets, and each target's index in the series."""

    closes: F64  # [N, W]
    actual: F64  # [N]
    target: npt.NDArray[np.int64]  # [N] index of each target close in the series
    returns: F64  # [N, W-1]
    flat: npt.NDArray[np.bool_]  # [N] windows whose every return is zero
    raw: F64  # [N, W-1, F] feature channels before the window scale (F = 0 without features)

    @property
    def last(self) -> F64:
        """The naive forecast: the last known close."""
        return self.closes[:, -1]

    @property
    def next_return(self) -> F64:
        return np.log(self.actual / self.last)


def make_windows(
    closes: F64, start: int, stop: int, window: int, features: dict[str, F64], names: Sequence[str] = ()
) -> Windows:
    w, actual = windows(closes, start, stop, window)
    w = np.ascontiguousarray(w)
    returns = np.asarray(log_returns(w), dtype=np.float64)
    first = max(start, window)
    feature_windows = {name: windows(features[name], start, stop, window)[0] for name in names}
    raw = raw_channels(w, feature_windows, names)
    flat = window_rms(returns) <= 1e-10
    return Windows(w, actual, np.arange(first, first + len(actual)), returns, flat, raw)


@dataclass(frozen=True)
class SeriesSlices:
    name: str
    closes: F64
    split: Split
    slices: dict[str, Windows]
    features: dict[str, F64] = field(default_factory=dict)  # the feature columns read (one per close)


@dataclass(frozen=True)
class Pooled:
    """All series' slices and the scaler fitted on the pooled training windows."""

    scaler: WindowScaler
    series: list[SeriesSlices]
    augment: list[SeriesSlices]
    features: FeatureScaler | None = None  # the OHLCV channels' statistics (closecast/features.py)

    def model_input(
        self, part: Windows, keep: npt.NDArray[Any] | None = None
    ) -> tuple[F32, F64, npt.NDArray[np.bool_]]:
        """Model input ``[N, W-1, 1+F]`` of a slice's windows (``keep`` of them), their scales and flat
        mask ``[N]``: the returns in window-RMS units, then each feature channel."""
        returns, raw = (part.returns, part.raw) if keep is None else (part.returns[keep], part.raw[keep])
        u, scale, flat = self.scaler.transform(returns)
        x = u[..., np.newaxis]
        if self.features is not None:
            x = np.concatenate([x, self.features.transform(raw, scale)], axis=-1)
        return x.astype(np.float32), np.asarray(scale, np.float64), np.asarray(flat, np.bool_)

    def inputs(self, part: Windows) -> tuple[F32, F32]:
        """Model input ``[N, W-1, 1+F]`` and target ``[N, 1]`` of a slice's non-flat windows."""
        keep = ~part.flat
        x, scale, _ = self.model_input(part, keep)
        y = (part.next_return[keep] / scale - self.scaler.mean) / self.scaler.std
        return x, y[:, np.newaxis].astype(np.float32)

    def pooled(self, name: str, with_augment: bool = False) -> tuple[F32, F32]:
        """One slice of every series (and of the augmentation series when asked), concatenated."""
        pairs = [self.inputs(s.slices[name]) for s in self.series]
        if with_augment:
            pairs += [self.inputs(s.slices[name]) for s in self.augment]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _slices(
    name: str, closes: F64, split: Split, window: int, features: dict[str, F64], names: Sequence[str] = ()
) -> SeriesSlices:
    bounds = slice_bounds(split, window)
    parts = {k: make_windows(closes, lo, hi, window, features, names) for k, (lo, hi) in bounds.items()}
    return SeriesSlices(name, closes, split, parts, {k: features[k] for k in names})


def series_name(s: Series, index: int) -> str:
    """A series' name in the manifest, its metrics and messages: its own name (file stem or id value, as
    ``closecast.collection.data_section`` lists it), else its position."""
    return s.name or f"series{index}"


def pool(series: Sequence[Series], cfg: DataConfig, augment: Sequence[F64] = ()) -> Pooled:
    """Split the series by time (``split_by_time``), build the four slices of each, and fit the scaler on all
    training windows (augmentation included: the scaler describes what the network is trained on)."""
    window, wanted = cfg.window, cfg.features
    if wanted and augment:
        raise ValueError(
            f"synthetic series have closes only; drop --synthetic or --features {','.join(wanted)}"
        )
    names = [series_name(s, i) for i, s in enumerate(series)]
    for s in series:
        require_features(s, wanted)
    if len(set(names)) < len(names):  # names key the per-series metrics; load_many refuses these already
        raise ValueError(f"series names {names} repeat; give every series its own name")
    real = [
        _slices(name, s.closes, split, window, s.features, wanted)
        for name, s, split in zip(names, series, split_by_time(series, cfg), strict=True)
    ]
    extra = []
    for i, closes in enumerate(augment):
        n = closes.size
        split = Split(n=n, train_end=int(n * cfg.train_frac), val_end=int(n * cfg.train_frac))
        extra.append(_slices(f"synthetic{i}", closes, split, window, {}))
    train_returns = np.concatenate([s.slices["train"].returns for s in real + extra])
    try:
        scaler = fit_window_scaler(train_returns)
    except ValueError as exc:
        raise ValueError(f"the training parts cannot be scaled: {exc}") from None
    if not wanted:
        return Pooled(scaler, real, extra)
    train = [s.slices["train"] for s in real]
    moving = np.concatenate([w.returns[~w.flat] for w in train])
    raw = np.concatenate([w.raw[~w.flat] for w in train])
    return Pooled(scaler, real, extra, fit_feature_scaler(raw, scaler.scales(moving)[0], wanted))
