"""Split, scaler and windowing: the places where look-ahead leaks usually hide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from closecast.config import Config, DataConfig
from closecast.representation import (
    Scaler,
    WindowScaler,
    fit_scaler,
    fit_window_scaler,
    log_returns,
    model_inputs,
)
from closecast.series import DataError, Series, check_length, load_csv, min_rows, series_from_values, windows
from tests.synthetic import make_closes, write_csv
from training.parts import SLICES, pool


def _series(closes: np.ndarray) -> Series:
    return Series(closes, None, "test", "Close", None, closes.size, 0)


def test_slices_are_chronological_and_disjoint() -> None:
    cfg = DataConfig(window=11)
    closes = make_closes(300)
    (one,) = pool([_series(closes)], cfg).series
    assert one.split.sizes == {"train": 210, "validation": 30, "test": 60}
    # every target belongs to exactly one slice, in time order, with nothing skipped after the first window
    targets = np.concatenate([one.slices[k].actual for k in SLICES])
    np.testing.assert_array_equal(targets, closes[cfg.window :])
    assert [one.slices[k].actual.size for k in SLICES] == [199, 15, 15, 60]


def test_scaler_ignores_validation_and_test_prices() -> None:
    closes = make_closes(300)
    changed = closes.copy()
    changed[210:] *= np.linspace(1, 50, 90)  # wild future: must not move the scaler
    a = pool([_series(closes)], DataConfig(window=11)).scaler
    b = pool([_series(changed)], DataConfig(window=11)).scaler
    assert a == b
    train_windows = np.lib.stride_tricks.sliding_window_view(closes[:209], 11)
    assert a == fit_window_scaler(log_returns(train_windows))


def test_window_scaler_round_trip_is_exact() -> None:
    returns = log_returns(np.lib.stride_tricks.sliding_window_view(make_closes(200), 11))
    scaler = fit_window_scaler(returns)
    u, scale, flat = scaler.transform(returns)
    assert not flat.any()
    np.testing.assert_allclose(scaler.inverse(u[:, -1], scale), returns[:, -1], rtol=1e-14)
    assert WindowScaler.from_dict(scaler.to_dict()) == scaler


def test_scaler_round_trip_is_exact() -> None:
    scaler = fit_scaler(log_returns(make_closes(200)))
    r = np.random.default_rng(1).normal(0, 0.02, 1000)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(r)), r, rtol=0, atol=1e-15)
    assert Scaler.from_dict(scaler.to_dict()) == scaler


def test_scaler_from_dict_refuses_zero_std() -> None:
    bad = {**fit_scaler(log_returns(make_closes(50))).to_dict(), "std": 0.0}
    with pytest.raises(ValueError, match=r"std is 0\.0"):
        Scaler.from_dict(bad)


def test_windows_pair_each_target_with_the_closes_before_it() -> None:
    closes = np.arange(1.0, 21.0)
    x, y = windows(closes, 12, 15, window=5)
    np.testing.assert_array_equal(y, [13.0, 14.0, 15.0])
    np.testing.assert_array_equal(x[0], [8.0, 9.0, 10.0, 11.0, 12.0])
    np.testing.assert_array_equal(x[:, -1] + 1, y)


def test_model_inputs_do_not_depend_on_price_level() -> None:
    closes = make_closes(60)[None, :21]
    scaler = fit_scaler(log_returns(make_closes(200)))
    np.testing.assert_allclose(model_inputs(closes, scaler), model_inputs(closes * 1e4, scaler), atol=1e-6)
    np.testing.assert_allclose(model_inputs(closes, scaler), model_inputs(closes * 5e-3, scaler), atol=1e-6)
    assert model_inputs(closes, scaler).shape == (1, 20, 1)


def test_check_length_names_the_minimum() -> None:
    cfg = DataConfig(window=21)
    needed = min_rows(cfg)
    check_length(_series(make_closes(needed)), cfg)
    with pytest.raises(
        DataError, match=rf"only {needed - 1} usable closes; window 21 .* needs at least {needed}"
    ):
        check_length(_series(make_closes(needed - 1)), cfg)


def test_load_csv_drops_and_counts_empty_closes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(50))
    lines = path.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ","
    path.write_text("\n".join(lines) + "\n")
    series = load_csv(path)
    assert series.closes.size == 49 and series.rows_dropped_empty == 1 and series.rows_read == 50
    assert series.notes == ["dropped 1 rows with an empty Close"]


def test_load_csv_reverses_newest_first_files(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(30))
    header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([header, *rows[::-1]]) + "\n")
    series = load_csv(path)
    np.testing.assert_allclose(series.closes, make_closes(30), rtol=1e-6)
    assert "reversed" in series.notes[0]


def test_series_from_values_quotes_the_bad_close() -> None:
    with pytest.raises(DataError, match=r"closes\[2\] is '-3.2'; prices must be > 0"):
        series_from_values([1.0, 2.0, -3.2])


def test_config_refuses_unknown_parameter() -> None:
    with pytest.raises(ValueError, match="unknown parameter 'windw'"):
        Config.from_overrides({"windw": 3})
