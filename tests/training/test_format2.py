"""Format 2 end to end on tiny models: volatility and level invariance, flat windows, one series = a batch,
several series pooled with per-series metrics, and the calibration slices and fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from closecast.bundle import load_forecaster
from closecast.config import Config
from closecast.forecaster_v2 import ForecasterV2
from closecast.intervals import (
    EWMA_SPAN,
    MIN_CALIBRATION,
    calibrate,
    ewma_along,
    ewma_scale,
    history_matrix,
    symmetric_conformal_quantiles,
    t4_quantiles,
)
from closecast.series import load_csv
from tests.synthetic import make_closes, write_csv
from tests.training.conftest import TINY
from training.parts import pool, slice_bounds
from training.pipeline import run_training


@pytest.fixture(scope="module")
def model(tiny_bundle: Path) -> ForecasterV2:
    forecaster = load_forecaster(tiny_bundle, providers="cpu")
    assert isinstance(forecaster, ForecasterV2)
    return forecaster


def _scale_returns(closes: np.ndarray, k: float) -> np.ndarray:
    r = np.diff(np.log(closes))
    return closes[0] * np.exp(np.concatenate([[0.0], np.cumsum(k * r)]))


@pytest.mark.parametrize("k", [0.01, 0.1, 3.0, 100.0])
def test_returns_times_k_give_forecast_returns_times_k(model: ForecasterV2, k: float) -> None:
    windows = np.array([make_closes(40, seed=s)[-model.window :] for s in range(8)])
    base = model.rollout(windows, 3)
    scaled = np.array([_scale_returns(w, k) for w in windows])
    np.testing.assert_allclose(model.rollout(scaled, 3) / k, base, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("k", [1e-4, 0.5, 1e6])
def test_prices_times_k_give_forecasts_times_k(model: ForecasterV2, k: float) -> None:
    windows = np.array([make_closes(40, seed=s)[-model.window :] for s in range(8)])
    np.testing.assert_allclose(
        model.predict_closes(windows * k, 3), model.predict_closes(windows, 3) * k, rtol=1e-14
    )


def test_intervals_scale_with_volatility(model: ForecasterV2) -> None:
    """A series three times as volatile gets bands three times as wide in log-return units."""
    closes = make_closes(300, seed=5)
    for n in (model.window, 300):  # the window table, then the EWMA table
        calm, wild = closes[-n:], _scale_returns(closes[-n:], 3.0)
        a, b = (model.forecast([c]).items[0] for c in (calm, wild))
        for level in (80, 95):
            width_a = np.log(a.intervals[level][1][0] / a.intervals[level][0][0])
            width_b = np.log(b.intervals[level][1][0] / b.intervals[level][0][0])
            assert width_b == pytest.approx(3 * width_a, rel=1e-8)


def test_flat_window_forecasts_the_last_close_with_a_real_interval(model: ForecasterV2) -> None:
    flat = np.full(40, 0.07533)
    (item,) = model.forecast([flat], horizon=3).items
    assert item.forecast == [0.07533] * 3
    lower, upper = item.intervals[80]
    assert all(lo < 0.07533 < hi for lo, hi in zip(lower, upper, strict=True))
    assert [w.kind for w in item.warnings] == ["flat_window", "fallback_intervals"]  # a tiny run: fallbacks
    assert "the intervals are sized by the model's typical move" in item.warnings[0].message


def test_flat_window_after_moves_sizes_intervals_by_the_returns_sent(model: ForecasterV2) -> None:
    closes = np.concatenate([make_closes(30, seed=2), np.full(model.window, 5.0)])
    (item,) = model.forecast([closes]).items
    assert item.forecast == [5.0]
    assert "sized by the returns sent" in item.warnings[0].message


def test_one_series_is_answered_bit_for_bit_as_in_a_batch(model: ForecasterV2) -> None:
    for k in range(40):
        series = make_closes(model.window + (k * 37) % 400, level=10.0 ** (k % 6 - 2), seed=k)
        horizon, levels = 1 + k % 5, [[80, 95], [50], [1, 99]][k % 3]
        alone = model.forecast([series], horizon, levels).items[0]
        others = [make_closes(model.window + 100, seed=99), np.full(model.window, 3.0)]
        batched = model.forecast([*others[: k % 3], series, *others], horizon, levels).items[k % 3]
        assert alone == batched


def test_history_matrix_right_aligns_each_series_returns() -> None:
    a, b = make_closes(5), make_closes(EWMA_SPAN + 40, seed=1)
    history, counts = history_matrix([a, list(b)])
    assert counts.tolist() == [4, EWMA_SPAN]
    np.testing.assert_array_equal(history[0, -4:], np.diff(np.log(a)))
    assert not history[0, :-4].any()
    np.testing.assert_array_equal(history[1], np.diff(np.log(b))[-EWMA_SPAN:])


def test_ewma_of_a_request_matches_training_ewma() -> None:
    closes = make_closes(400, seed=4)
    returns = np.diff(np.log(closes))
    along = ewma_along(returns)
    for n in (10, 100, 300, 400):
        history, counts = history_matrix([closes[:n]])
        assert ewma_scale(history, counts)[0] == pytest.approx(along[n - 2], rel=1e-12)


def test_calibration_falls_back_to_training_residuals_then_student_t() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=MIN_CALIBRATION - 1), rng.normal(size=500)
    assert calibrate(rng.normal(size=MIN_CALIBRATION), many)[1] == "conformal"
    assert calibrate(few, many)[1:] == ("conformal_pooled_train", MIN_CALIBRATION - 1 + 500)
    quantiles, method, _ = calibrate(few, few[:0])
    assert method == "student_t4"
    np.testing.assert_allclose(quantiles, t4_quantiles())
    lo80, hi80 = np.interp([0.1, 0.9], np.arange(0.005, 1.0, 0.005), t4_quantiles())
    assert (lo80, hi80) == pytest.approx((-1.2467, 1.2467), abs=1e-3)


def test_symmetric_quantiles_are_order_statistics_of_absolute_residuals() -> None:
    """Level L: ± the ceil((n+1)L)-th smallest |e|; 19 residuals: 90% -> the 18th, 80% -> the 16th."""
    e = np.array([-9.0, 7, -5, 4, 3.5, -3, 2.5, 2, -1.5, 1.2, 1.1, -1, 0.9, 0.8, -0.7, 0.6, 0.5, -0.4, 0.3])
    a = np.sort(np.abs(e))
    q = symmetric_conformal_quantiles(e, [0.05, 0.1, 0.5, 0.9, 0.95, 0.999])
    assert q.tolist() == [-a[17], -a[15], 0.0, a[15], a[17], a[18]]


def test_symmetric_table_is_antisymmetric_and_covers_on_exchangeable_data() -> None:
    rng = np.random.default_rng(3)
    skewed = rng.gamma(2.0, size=648) - 1.5  # calibration: skewed, biased
    q = symmetric_conformal_quantiles(skewed)
    np.testing.assert_array_equal(q, -q[::-1])
    assert np.all(np.diff(q) >= 0)
    fresh = rng.gamma(2.0, size=(200, 648)) - 1.5  # 200 new calibration sets, each tested on a fresh draw
    test = rng.gamma(2.0, size=(200, 2000)) - 1.5
    for level in (80, 95):
        bound = [
            np.interp(0.5 + level / 200, np.arange(0.005, 1.0, 0.005), symmetric_conformal_quantiles(f))
            for f in fresh
        ]
        held = np.mean(np.abs(test) <= np.array(bound)[:, None])
        assert level / 100 <= held < level / 100 + 0.01, (level, held)


def test_calibration_makes_symmetric_tables() -> None:
    rng = np.random.default_rng(1)
    cal = rng.standard_t(4, size=MIN_CALIBRATION * 3) + 0.2
    quantiles, method, n = calibrate(cal, cal[:0])
    assert (method, n) == ("conformal", cal.size)
    np.testing.assert_array_equal(quantiles, symmetric_conformal_quantiles(cal))
    pooled, method, _ = calibrate(cal[:10], cal)
    assert method == "conformal_pooled_train"
    np.testing.assert_array_equal(pooled, -pooled[::-1])


def test_calibration_slice_is_apart_from_early_stopping() -> None:
    from closecast.series import make_split

    split = make_split(1000, Config().data)
    bounds = slice_bounds(split, 21)
    assert bounds == {
        "train": (21, 700),
        "early_stop": (700, 750),
        "calibration": (750, 800),
        "test": (800, 1000),
    }


def test_two_series_train_together_with_metrics_per_series(tmp_path: Path) -> None:
    calm = write_csv(tmp_path / "calm.csv", make_closes(300, level=50.0, seed=1) ** 0.3, column="Close")
    wild = write_csv(tmp_path / "wild.csv", make_closes(400, level=2000.0, seed=2), start="2019-06-01")
    series = [load_csv(calm), load_csv(wild)]
    pooled = pool(series, Config.from_overrides(TINY).data)
    assert [s.name for s in pooled.series] == ["calm", "wild"]
    assert [s.split.n for s in pooled.series] == [300, 400]
    m = run_training(series, Config.from_overrides(TINY), tmp_path / "b", quiet=True)
    assert set(m["metrics"]["series"]) == {"calm", "wild"}
    assert m["data"]["split"]["by"] == "time"  # dates in both: one pair of cut dates (split_by_time)
    test_sizes = {d["name"]: d["split"]["test"] for d in m["data"]["series"]}
    assert {k: v["test"]["n"] for k, v in m["metrics"]["series"].items()} == test_sizes
    assert m["metrics"]["test"]["n"] == sum(test_sizes.values())
    assert m["metrics"]["test"]["units"] == "relative_to_last_close"
    for one in m["metrics"]["series"].values():
        assert set(one["test"]["coverage"]) == {"80", "95"}
    assert [d["name"] for d in m["data"]["series"]] == ["calm", "wild"]
    assert m["data"]["date_start"] == "2019-06-01"
    assert set(m["intervals"]["test_coverage_by_series"]) == {"calm", "wild"}
    assert isinstance(load_forecaster(tmp_path / "b", providers="cpu"), ForecasterV2)


def test_synthetic_and_mirrored_series_train_but_are_not_scored(synthetic_csv: Path, tmp_path: Path) -> None:
    m = run_training(
        [load_csv(synthetic_csv)],
        Config.from_overrides(TINY),
        tmp_path / "s",
        quiet=True,
        synthetic=2,
        mirror=True,
    )
    augmentation = dict(m["data"]["augmentation"])
    assert isinstance(augmentation.pop("output_centred_by"), float)
    assert augmentation == {
        "synthetic_series": 2,
        "length": 4000,
        "seed": 7,
        "dynamics": ["garch", "reversal"],
        "mirrored": True,
    }
    assert set(m["metrics"]["series"]) == {"prices"}
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["training"]["windows"]["train"] > 2 * 2 * 2500  # each synthetic series and its mirror
