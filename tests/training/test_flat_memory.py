"""Flat memory: windows are views of the series and index arrays, inputs are built a batch at a time, and
what they compute is what the materialised windows computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from closecast.config import DataConfig
from closecast.features import raw_channels
from closecast.representation import fit_window_scaler, log_returns, window_rms
from closecast.series import Series, load_csv
from tests.synthetic import make_closes, write_ohlcv_csv
from training import windowset
from training.parts import SLICES, Pooled, pool
from training.windowset import fit_features_chunked, fit_scaler_chunked

WINDOW = 64


def _pooled(n: int = 3000) -> tuple[np.ndarray, Pooled]:
    closes = make_closes(n, seed=4)
    closes[1000:1100] = closes[1000]  # flat windows too
    return closes, pool([Series(closes, None, "s", "Close", None, n, 0)], DataConfig(window=WINDOW))


def test_window_dataset_holds_no_per_window_copies() -> None:
    closes, pooled = _pooled()
    (one,) = pooled.series
    values = one.slices["train"].values
    for name in SLICES:
        w = one.slices[name]
        assert np.shares_memory(w.returns, values) and np.shares_memory(w.closes, closes)
        assert w.values is values  # the four slices share the series' returns
        assert w.rms.nbytes + w.flat.nbytes <= 9 * w.n  # O(N), not O(N x window)
        ws = pooled.dataset(name)
        assert ws.values is values  # one series: its own array, not a copy
        own = ws.starts.nbytes + ws.scale.nbytes + ws.next_return.nbytes
        assert own <= 24 * len(ws) < 8 * len(ws) * (WINDOW - 1)


def test_batched_inputs_are_the_materialised_inputs_bit_for_bit() -> None:
    _, pooled = _pooled()
    scaler = pooled.scaler
    w = pooled.series[0].slices["train"]
    materialised = np.ascontiguousarray(w.returns)
    np.testing.assert_array_equal(w.rms, window_rms(materialised))
    keep = ~w.flat
    assert w.flat.sum() > 0 and keep.sum() > 0
    u, scale, _ = scaler.transform(materialised[keep])
    ws = pooled.dataset("train")
    rows = np.arange(len(ws))[::-1]  # any order, as a shuffled batch
    np.testing.assert_array_equal(ws.inputs(rows, scaler), u[rows, :, np.newaxis].astype(np.float32))
    y = (w.next_return[keep] / scale - scaler.mean) / scaler.std
    np.testing.assert_array_equal(ws.targets(scaler)[:, 0], y.astype(np.float32))


def test_scaler_fitted_in_chunks_matches_the_one_pass_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    closes, pooled = _pooled()
    train_closes = closes[: pooled.series[0].split.train_end - 1]  # the inputs of the training targets
    materialised = log_returns(np.lib.stride_tricks.sliding_window_view(train_closes, WINDOW))
    one_pass = fit_window_scaler(materialised)
    assert pooled.scaler == one_pass  # one chunk: the very same figures
    monkeypatch.setattr(windowset, "CHUNK_ELEMENTS", 1000)  # ~16 windows a chunk
    chunked = fit_scaler_chunked(pooled.dataset("train"))
    assert (chunked.n, chunked.flat_scale) == (one_pass.n, one_pass.flat_scale)
    assert chunked.mean == pytest.approx(one_pass.mean, rel=1e-12)
    assert chunked.std == pytest.approx(one_pass.std, rel=1e-12)


def test_feature_channels_are_views_and_match_materialised_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OHLCV channels ride in the series' ``values`` (no per-window copy); a batch's inputs are what the
    materialised windows gave (``raw_channels`` per window, then the feature scaler); the chunked feature
    fit agrees with the one-shot fit."""
    names = ("high", "low", "open", "volume")
    s = load_csv(write_ohlcv_csv(tmp_path / "o.csv", 600), features=names)
    pooled = pool([s], DataConfig(window=16, features=names))
    train = pooled.series[0].slices["train"]
    assert train.values.shape[1] == 1 + len(names)
    ws = pooled.dataset("train")
    assert ws.channels == 1 + len(names) and np.shares_memory(ws.values, train.values)
    keep = ~train.flat
    closes = np.asarray(train.closes)[keep]
    cols = {k: np.lib.stride_tricks.sliding_window_view(s.features[k], 16)[train.starts[keep]] for k in names}
    raw = raw_channels(closes, cols, names)
    assert pooled.features is not None
    expected = pooled.features.transform(raw, ws.scale)
    np.testing.assert_array_equal(ws.inputs(slice(None), pooled.scaler)[..., 1:], expected.astype(np.float32))
    one_shot = fit_features_chunked(ws, names)
    monkeypatch.setattr(windowset, "CHUNK_ELEMENTS", 4096)
    chunked = fit_features_chunked(ws, names)
    np.testing.assert_allclose(chunked.mean, one_shot.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(chunked.std, one_shot.std, rtol=1e-12)
