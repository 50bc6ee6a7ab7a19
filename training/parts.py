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
With ``mirror``, every training part (real and synthetic) is added once more as its mirror image, each log
return negated (closes ``c0**2 / c``): what the network learns from a rise it learns from the matching fall,
so it can forecast a drift only where the window shows one, never the drift the training period happened to
have (the S&P 500 and MSFT rose; a constant upward forecast was their one "skill"). The scaler's mean is
then 0 up to rounding. Training windows only, like the synthetic series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.collection import split_by_time
from closecast.config import DataConfig
from closecast.features import FeatureScaler, raw_channels
from closecast.representation import FLAT_EPS, WindowScaler, log_returns, sliding_windows
from closecast.series import Series, Split, require_features
from training.windowset import WindowSet, fit_features_chunked, fit_scaler_chunked, join, rms_of

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
    """One slice of one series: the targets ``[first, stop)``, as views into the series' closes and returns.

    Nothing here grows with ``N x window``: ``closes`` and ``returns`` are strided views (``[N, W]``,
    ``[N, W-1]``; index them a batch at a time), ``rms``/``flat`` are ``[N]`` (``training/windowset.py``).
    """

    series: F64  # [T] the whole series' closes (shared)
    values: F64  # [T-1, C] its channels (returns, then the raw feature channels), shared by the four slices
    first: int  # index of the first target close
    stop: int
    window: int
    rms: F64  # [N] each window's RMS return
    flat: npt.NDArray[np.bool_]  # [N] windows whose every return is zero

    @property
    def n(self) -> int:
        return self.stop - self.first

    @property
    def target(self) -> npt.NDArray[np.int64]:
        """``[N]`` index of each target close in the series."""
        return np.arange(self.first, self.stop)

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        """``[N]`` index of each window's first return in ``values``."""
        return np.arange(self.first - self.window, self.stop - self.window)

    @property
    def actual(self) -> F64:
        return self.series[self.first : self.stop]

    @property
    def last(self) -> F64:
        """The naive forecast: the last known close."""
        return self.series[self.first - 1 : self.stop - 1]

    @property
    def closes(self) -> F64:
        """``[N, W]`` input closes (a view)."""
        view = np.asarray(sliding_windows(self.series, self.window), dtype=np.float64)
        return view[self.first - self.window : self.stop - self.window]

    @property
    def returns(self) -> F64:
        """``[N, W-1]`` input log returns (a view of channel 0)."""
        view = np.asarray(sliding_windows(self.values[:, 0], self.window - 1), dtype=np.float64)
        return view[self.first - self.window : self.stop - self.window]

    @property
    def next_return(self) -> F64:
        return np.log(self.actual / self.last)

    def part(self, keep_flat: bool = False) -> tuple[F64, npt.NDArray[np.int64], F64, F64]:
        """``(values, starts, scale, next_return)`` of the windows that move (all, with ``keep_flat``; a flat
        one's scale is 1), for ``windowset.join``."""
        keep = slice(None) if keep_flat else ~self.flat
        scale = np.where(self.flat, 1.0, self.rms)
        return self.values, self.starts[keep], scale[keep], self.next_return[keep]

    def set(self, keep_flat: bool = False) -> WindowSet:
        return join([self.part(keep_flat)], self.window - 1)


def series_values(closes: F64, features: dict[str, F64] | None = None, names: Sequence[str] = ()) -> F64:
    """A series' channels ``[T-1, 1+F]``: its log returns, then each feature's raw channel
    (``closecast.features.raw_channels`` of the whole series: row ``i`` is the one aligned with return ``i``,
    so a window's rows are those of its returns)."""
    returns = np.asarray(log_returns(closes), dtype=np.float64)[:, np.newaxis]
    if not names:
        return returns
    return np.concatenate([returns, raw_channels(closes, features or {}, names)], axis=1)


def make_windows(closes: F64, start: int, stop: int, window: int, values: F64 | None = None) -> Windows:
    """The windows whose targets are ``[max(start, window), stop)``; ``values`` are the series' channels
    ``[T-1, C]`` (default: its log returns), computed once per series when given."""
    if values is None:
        values = series_values(closes)
    first = max(start, window)
    stop = max(stop, first)
    rms = rms_of(values, np.arange(first - window, stop - window), window - 1)
    return Windows(closes, values, first, stop, window, rms, rms <= FLAT_EPS)


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
        """Model input ``[N, W-1, 1+F]`` of a slice's windows (``keep`` of them, few: built at once), their
        scales and flat mask ``[N]``: the returns in window-RMS units, then each feature channel."""
        every = self.window_set(part, keep_flat=True)
        rows: npt.NDArray[Any] | slice = slice(None) if keep is None else keep
        return every.inputs(rows, self.scaler), every.scale[rows], part.flat[rows]

    def dataset(self, name: str, with_augment: bool = False) -> WindowSet:
        """The non-flat windows of one slice of every series (and of the augmentation series when asked),
        pooled as index arrays; inputs (returns and feature channels) are built per batch."""
        ws = pooled_set(self.series + (self.augment if with_augment else []), name)
        return replace(ws, features=self.features)

    def window_set(self, part: Windows, keep_flat: bool = False) -> WindowSet:
        """One slice of one series as a ``WindowSet`` that builds this model's inputs."""
        return replace(part.set(keep_flat), features=self.features)


def pooled_set(slices: Sequence[SeriesSlices], name: str) -> WindowSet:
    return join([s.slices[name].part() for s in slices], slices[0].slices[name].window - 1)


def _slices(
    name: str, closes: F64, split: Split, window: int, features: dict[str, F64], names: Sequence[str] = ()
) -> SeriesSlices:
    bounds = slice_bounds(split, window)
    values = series_values(closes, features, names)  # shared by the slices' views
    parts = {k: make_windows(closes, lo, hi, window, values) for k, (lo, hi) in bounds.items()}
    return SeriesSlices(name, closes, split, parts, {k: features[k] for k in names})


def series_name(s: Series, index: int) -> str:
    """A series' name in the manifest, its metrics and messages: its own name (file stem or id value, as
    ``closecast.collection.data_section`` lists it), else its position."""
    return s.name or f"series{index}"


def mirrored(closes: F64) -> F64:
    """The same first close, every log return negated: ``c0**2 / c`` (a rise becomes the same fall)."""
    return np.asarray(closes[0] ** 2 / closes, dtype=np.float64)


def pool(
    series: Sequence[Series], cfg: DataConfig, augment: Sequence[F64] = (), mirror: bool = False
) -> Pooled:
    """Split the series by time (``split_by_time``), build the four slices of each, and fit the scaler on all
    training windows (augmentation included: the scaler describes what the network is trained on).
    ``mirror``: add each training part's mirror image as augmentation (module docstring)."""
    window, wanted = cfg.window, cfg.features
    if wanted and augment:
        raise ValueError(
            f"synthetic series have closes only; drop --synthetic or --features {','.join(wanted)}"
        )
    if wanted and mirror:
        raise ValueError(
            f"a mirrored series has no high/low features; drop --mirror or --features {','.join(wanted)}"
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
    if mirror:
        for one in [*real, *extra]:
            end = one.split.train_end  # targets [window, end) need closes [0, end)
            flipped = mirrored(one.closes[:end])
            extra.append(
                _slices(f"{one.name}~mirror", flipped, Split(n=end, train_end=end, val_end=end), window, {})
            )
    try:
        scaler = fit_scaler_chunked(pooled_set(real + extra, "train"))
    except ValueError as exc:
        raise ValueError(f"the training parts cannot be scaled: {exc}") from None
    if not wanted:
        return Pooled(scaler, real, extra)
    return Pooled(scaler, real, extra, fit_features_chunked(pooled_set(real, "train"), wanted))
