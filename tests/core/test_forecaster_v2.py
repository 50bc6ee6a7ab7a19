"""The format-2 forecaster's one-series path against its batch path, bit for bit (on the committed
format-2 fixture)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from closecast.bundle import load_forecaster
from closecast.forecaster_v2 import ForecasterV2
from tests.helpers import FORMAT2_BUNDLE, OHLCV_BUNDLE, OHLCV_FEATURES
from tests.synthetic import make_closes


@pytest.fixture(scope="module")
def model() -> ForecasterV2:
    forecaster = load_forecaster(FORMAT2_BUNDLE, providers="cpu")
    assert isinstance(forecaster, ForecasterV2)
    return forecaster


def _cases(window: int) -> list[np.ndarray]:
    """Both interval tables (under and over 64 closes), price levels far apart, a wild move, a window that
    goes flat during the rollout, a flat window and a flat window after moves (the warnings' paths)."""
    cases = [make_closes(window + (k * 53) % 700, level=10.0 ** (k % 7 - 3), seed=k) for k in range(36)]
    wild = make_closes(300, seed=3)
    wild[-2] *= 1.6
    cases.append(wild)
    nearly = np.concatenate([make_closes(80, seed=4), np.full(window - 2, 7.0)])
    cases.append(nearly)
    cases.append(np.full(window, 0.07533))
    cases.append(np.concatenate([make_closes(30, seed=2), np.full(window, 5.0)]))
    return cases


def test_one_series_equals_its_row_of_a_batch_bit_for_bit(model: ForecasterV2) -> None:
    others = [make_closes(model.window + 100, seed=99), np.full(model.window, 3.0)]
    for k, series in enumerate(_cases(model.window)):
        horizon, levels = [1, 2, 5, 30][k % 4], [[80, 95], [50], [1, 99], [80]][k % 4]
        for form in (series, series.tolist()):
            alone = model.forecast([form], horizon, levels).items[0]
            batched = model.forecast([*others[: k % 3], form, *others], horizon, levels).items[k % 3]
            assert alone == batched, (k, horizon, levels)
            assert np.array_equal(np.array(alone.forecast), np.array(batched.forecast))  # -0.0, NaN


def test_one_series_path_is_taken_for_ordinary_requests(model: ForecasterV2) -> None:
    plan = model._plan((80, 95))
    for n in (model.window, 64, 300):
        assert model._forecast_one(make_closes(n, seed=n), 3, plan) is not None
    assert model._forecast_one(np.full(model.window, 2.0), 1, plan) is None  # flat: the batch path words it


def test_a_batch_of_short_series_reads_only_their_windows_and_equals_each_alone(model: ForecasterV2) -> None:
    """Under 64 closes no series uses the EWMA table: the batch path skips the history matrix, same bits."""
    short = [make_closes(model.window + k % 43, level=10.0 ** (k % 5 - 2), seed=k) for k in range(40)]
    short.append(np.full(model.window + 3, 2.5))  # flat: its warning inside a short batch
    returns, history, _ = model._returns(short)
    assert history is None and returns.shape == (len(short), model.window - 1)
    for horizon, levels in ((1, [80, 95]), (7, [50, 99])):
        batch = model.forecast(short, horizon, levels).items
        assert batch == [model.forecast([s], horizon, levels).items[0] for s in short]


def test_forecast_rows_is_forecast_as_one_table(model: ForecasterV2) -> None:
    series = [*_cases(model.window)[:12], np.full(model.window, 4.0)]
    locs = [("body", "series", i, "closes") for i in range(len(series))]
    for horizon, levels in ((1, [80, 95]), (4, [99, 1])):
        rows = model.forecast_rows(series, horizon, levels, locs)
        assert rows.items() == model.forecast(series, horizon, levels, locs).items


def test_a_rollout_without_a_feature_the_model_reads_names_it_and_the_model() -> None:
    forecaster = load_forecaster(OHLCV_BUNDLE, providers="cpu")
    assert isinstance(forecaster, ForecasterV2)
    window = int(forecaster.manifest["input"]["window"])
    closes = make_closes(window)[np.newaxis, :]
    features = {name: closes for name in OHLCV_FEATURES if name != "volume"}
    with pytest.raises(ValueError, match=re.escape(f"model {forecaster.version} reads features")) as caught:
        forecaster.rollout(closes, 2, features)
    assert "missing ['volume']" in str(caught.value)
