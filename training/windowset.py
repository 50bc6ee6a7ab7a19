"""Windows as index arrays, built into model inputs one batch at a time (flat memory).

A series of ``T`` closes has ``T - window + 1`` windows of ``window - 1`` returns: materialising them all
costs ``window - 1`` times the series (a million closes with ``--window 64``: ~0.5 GB per float64 copy; the
old pipeline made several, and ran the LSTM over whole slices at once, peaking at 9.8 GB). Here every
window is only *where it starts* in its series' returns; what a window needs beyond that is O(1) (its RMS
scale, its next return). The normalised ``[batch, window - 1, channels]`` tensor is gathered and scaled per
batch, in training, evaluation, calibration and the parity check alike.

Each window's RMS (``closecast.representation.window_rms``) is computed in chunks of rows with the very
reduction serving uses on a request, so a window's scale, and whether it is flat, is bit for bit what the
forecaster computes (a running sum of squares would be O(N) too, but its differences of large sums round
differently, and a flat window's ``1e-10`` threshold would then depend on everything before it).

Channels: ``values`` is ``[T-1, C]`` per series, channel 0 the log returns, channels 1.. the raw OHLCV
feature channels (``closecast.features.raw_channels`` of the whole series; C = 1 + F); every channel is
gathered alike, and ``normalise`` says how each becomes model units (features: ``FeatureScaler``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from closecast.features import FeatureScaler, fit_feature_scaler
from closecast.representation import FLAT_EPS, WindowScaler, window_rms

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
CHUNK_ELEMENTS = 1 << 20  # values per chunk when a whole slice is scanned (8 MB of float64 per channel)
EVAL_BATCH = 1024  # windows per forward pass outside training (~40 MB of LSTM activations at T=63, H=32)


def gather(values: F64, starts: I64, length: int) -> F64:
    """Rows ``values[s : s + length]`` for each start: ``[M, C]`` -> ``[B, length, C]`` (one batch's copy)."""
    return values[starts[:, np.newaxis] + np.arange(length)]


def chunk_rows(n: int, length: int, elements: int | None = None) -> Iterator[slice]:
    """Consecutive row ranges of at most ``elements`` (``CHUNK_ELEMENTS``) values each (at least one row)."""
    step = max(1, (elements or CHUNK_ELEMENTS) // max(1, length))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


def rms_of(values: F64, starts: I64, length: int) -> F64:
    """Each window's RMS return (channel 0), chunked: ``[N]``, never an ``[N, length]`` array."""
    out = np.empty(starts.size, dtype=np.float64)
    for rows in chunk_rows(starts.size, length):
        out[rows] = window_rms(gather(values[:, :1], starts[rows], length)[..., 0])
    return out


def normalise(raw: F64, scale: F64, scaler: WindowScaler, features: FeatureScaler | None = None) -> F32:
    """Gathered windows ``[B, L, C]`` -> model units ``[B, L, C]`` float32: returns over the window's scale,
    then the fitted standardisation; feature channels (``C > 1``) by ``features``."""
    u = ((raw[..., 0] / scale[:, np.newaxis] - scaler.mean) / scaler.std)[..., np.newaxis]
    if features is not None:
        u = np.concatenate([u, features.transform(raw[..., 1:], scale)], axis=-1)
    return u.astype(np.float32)


@dataclass(frozen=True)
class WindowSet:
    """Windows pooled from one or many series: ``values`` shared, per window its start, scale, next return.

    ``scale`` is the window's RMS (1 for a flat window, as ``WindowScaler.scales``); ``next_return`` the log
    return of the target. Rows are model inputs only through ``inputs``/``batches``.
    """

    values: F64  # [M, C] the series' channels end to end (one series: its own array, not a copy)
    starts: I64  # [N] each window's first row in values
    scale: F64  # [N]
    next_return: F64  # [N]
    length: int  # window - 1
    features: FeatureScaler | None = None  # how channels 1.. become model units (None: returns only)

    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])

    def inputs(self, rows: I64 | slice, scaler: WindowScaler) -> F32:
        """Model inputs ``[B, window-1, C]`` of the given rows."""
        raw = gather(self.values, self.starts[rows], self.length)
        return normalise(raw, self.scale[rows], scaler, self.features)

    def targets(self, scaler: WindowScaler, rows: I64 | slice = slice(None)) -> F32:
        """The next return in model units, ``[B, 1]``."""
        y = (self.next_return[rows] / self.scale[rows] - scaler.mean) / scaler.std
        return y[:, np.newaxis].astype(np.float32)

    def input_batches(self, scaler: WindowScaler, size: int = EVAL_BATCH) -> Iterator[F32]:
        """Inputs in order, ``size`` windows at a time."""
        for lo in range(0, len(self), size):
            yield self.inputs(slice(lo, min(len(self), lo + size)), scaler)

    def batches(self, scaler: WindowScaler, size: int = EVAL_BATCH) -> Iterator[tuple[F32, F32]]:
        """Inputs and targets in order, ``size`` windows at a time."""
        for lo in range(0, len(self), size):
            rows = slice(lo, min(len(self), lo + size))
            yield self.inputs(rows, scaler), self.targets(scaler, rows)


def join(parts: Sequence[tuple[F64, I64, F64, F64]], length: int) -> WindowSet:
    """Pool ``(values [M, C], starts, scale, next_return)`` of one or more slices into one ``WindowSet``.

    Slices of one series share its ``values`` (no copy); several series' values are laid end to end
    (O(total closes)), never a window."""
    if len({id(p[0]) for p in parts}) == 1:
        values, offsets = parts[0][0], [0] * len(parts)
    else:
        values = np.concatenate([p[0] for p in parts])
        offsets = np.cumsum([0] + [p[0].shape[0] for p in parts[:-1]]).tolist()
    return WindowSet(
        values=values,
        starts=np.concatenate([p[1] + off for p, off in zip(parts, offsets, strict=True)]).astype(np.int64),
        scale=np.concatenate([p[2] for p in parts]),
        next_return=np.concatenate([p[3] for p in parts]),
        length=length,
    )


def fit_scaler_chunked(ws: WindowSet) -> WindowScaler:
    """``closecast.representation.fit_window_scaler`` over the (non-flat) windows of ``ws``, chunk by chunk:
    mean, then the mean squared deviation from it (two passes, as ``np.std``). With one chunk the figures are
    those of ``fit_window_scaler`` exactly; with several, the sums of the chunks' sums may round differently
    in the last bit."""
    n_rows = len(ws)
    if n_rows < 2:
        raise ValueError(f"need at least 2 training windows that move, got {n_rows}")
    n = n_rows * ws.length
    chunks = list(chunk_rows(n_rows, ws.length))

    def z(rows: slice) -> F64:
        return gather(ws.values[:, :1], ws.starts[rows], ws.length)[..., 0] / ws.scale[rows, np.newaxis]

    mean = _total(np.add.reduce(z(rows), axis=None) for rows in chunks) / n
    var = _total(np.add.reduce((d := z(rows) - mean) * d, axis=None) for rows in chunks) / n
    std = float(np.sqrt(var))
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"the training windows' normalised returns have standard deviation {std}")
    return WindowScaler(mean=float(mean), std=std, n=n_rows, flat_scale=float(np.median(ws.scale)))


def fit_features_chunked(ws: WindowSet, names: tuple[str, ...]) -> FeatureScaler:
    """``closecast.features.fit_feature_scaler`` over the windows of ``ws`` (channels 1..), chunk by chunk:
    one chunk is that function exactly; several, per-feature two-pass sums (as ``fit_scaler_chunked``)."""
    chunks = list(chunk_rows(len(ws), ws.length * len(names)))

    def raw(rows: slice) -> F64:
        return gather(ws.values[:, 1:], ws.starts[rows], ws.length)

    if len(chunks) <= 1:
        return fit_feature_scaler(raw(slice(None)), ws.scale, names)
    unit = FeatureScaler(names, (0.0,) * len(names), (1.0,) * len(names))

    def x(rows: slice) -> F64:
        return unit.transform(raw(rows), ws.scale[rows]).reshape(-1, len(names))

    n = len(ws) * ws.length
    mean = np.array([math.fsum(col) for col in zip(*(x(r).sum(axis=0) for r in chunks), strict=True)]) / n
    sq = [((d := x(r) - mean) * d).sum(axis=0) for r in chunks]
    std = np.sqrt(np.array([math.fsum(col) for col in zip(*sq, strict=True)]) / n)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return FeatureScaler(names, tuple(mean.tolist()), tuple(std.tolist()))


def _total(sums: Iterator[np.floating]) -> np.floating | float:
    """One chunk: numpy's own sum, untouched; several: their exactly rounded total."""
    items = list(sums)
    return items[0] if len(items) == 1 else math.fsum(float(s) for s in items)


def is_flat(rms: F64) -> npt.NDArray[np.bool_]:
    return rms <= FLAT_EPS
