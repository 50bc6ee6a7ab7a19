"""The numpy + ONNX Runtime forecaster on its own."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from closecast.bundle import load_forecaster
from closecast.errors import InputInvalid
from closecast.features import FeatureScaler
from closecast.forecaster_v1 import ForecasterV1
from closecast.representation import model_inputs
from tests.helpers import FORMAT1_BUNDLE
from tests.synthetic import calm_walk


@pytest.fixture(scope="module")
def model() -> ForecasterV1:
    forecaster = load_forecaster(FORMAT1_BUNDLE, "cpu")
    assert isinstance(forecaster, ForecasterV1)  # the format-1 fixture
    return forecaster


def test_rollout_appends_each_prediction_and_drops_the_oldest(model: ForecasterV1) -> None:
    windows = np.array([calm_walk(model.window, seed=s) for s in range(3)])
    x = model_inputs(windows, model.scaler)
    expected = []
    total = np.zeros(3)
    for _ in range(4):
        z = model.session.run(None, {model.input_name: x})[0][:, 0]
        total = total + z.astype(np.float64) * model.scaler.std + model.scaler.mean
        expected.append(total.copy())
        x = np.concatenate([x[:, 1:], z[:, None, None]], axis=1)
    np.testing.assert_allclose(model.rollout(windows, 4), np.stack(expected, axis=1), rtol=1e-12)


def test_predict_closes_is_last_close_times_exp_of_cumulative_return(model: ForecasterV1) -> None:
    windows = np.array([calm_walk(model.window, level=50.0)])
    np.testing.assert_allclose(
        model.predict_closes(windows, 3), windows[:, -1:] * np.exp(model.rollout(windows, 3))
    )


def test_forecast_lists_every_short_series(model: ForecasterV1) -> None:
    with pytest.raises(InputInvalid) as caught:
        model.forecast([np.ones(3), np.ones(model.window), np.ones(2)], locs=[("a",), ("b",), ("c",)])
    assert [p.loc for p in caught.value.problems] == [("a",), ("c",)]


def test_residual_quantiles_interpolate_the_stored_ones(model: ForecasterV1) -> None:
    intervals = model.manifest["intervals"]
    lo, hi = model.residual_quantiles(90)
    assert lo == pytest.approx(np.interp(0.05, intervals["probabilities"], intervals["residual_quantiles"]))
    assert hi == pytest.approx(np.interp(0.95, intervals["probabilities"], intervals["residual_quantiles"]))


def test_level_beyond_the_stored_quantiles_warns(model: ForecasterV1) -> None:
    manifest = copy.deepcopy(model.manifest)
    probabilities = manifest["intervals"]["probabilities"]
    keep = [i for i, p in enumerate(probabilities) if 0.05 <= p <= 0.95]
    manifest["intervals"]["probabilities"] = [probabilities[i] for i in keep]
    manifest["intervals"]["residual_quantiles"] = [
        manifest["intervals"]["residual_quantiles"][i] for i in keep
    ]
    narrow = ForecasterV1(model.session, model.scaler, manifest, model.version)
    (item,) = narrow.forecast([np.array(calm_walk())], levels=[80, 99]).items
    assert [w.message for w in item.warnings] == [
        "level 99 needs residual quantiles 0.005 and 0.995 but the model stores 0.05..0.95; "
        "the 99% interval is too narrow"
    ]
    assert [w.kind for w in item.warnings] == ["level_beyond_quantiles"]


def test_one_series_is_answered_bit_for_bit_as_in_a_batch(model: ForecasterV1) -> None:
    """The single-series fast path and the batch path must agree exactly, warnings included."""
    for k in range(60):
        series = calm_walk(model.window + k % 7, level=10.0 ** (k % 6 - 2), seed=k)
        if k % 3 == 0:
            series[-2] *= 1.4  # a move beyond training: warnings on both paths
        horizon, levels = 1 + k % 5, [[80, 95], [50], [1, 99]][k % 3]
        alone = model.forecast([series], horizon, levels).items[0]
        batched = model.forecast([series, calm_walk(model.window, seed=99)], horizon, levels).items[0]
        assert alone == batched


def test_forecast_rows_is_forecast_as_one_table(model: ForecasterV1) -> None:
    series = [np.asarray(calm_walk(), dtype=np.float64)[: model.window + k] for k in range(6)]
    locs = [("body", "series", i, "closes") for i in range(len(series))]
    for horizon, levels in ((1, [80, 95]), (3, [99, 50])):
        rows = model.forecast_rows(series, horizon, levels, locs)
        assert rows.items() == model.forecast(series, horizon, levels, locs).items


def test_format_1_refuses_a_feature_scaler_and_names_its_features(model: ForecasterV1) -> None:
    feature_scaler = FeatureScaler(("high", "volume"), (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(
        TypeError, match=r"format 1 reads no features; got a feature scaler for \['high', 'volume'\]"
    ):
        ForecasterV1.load(model.session, model.scaler, model.manifest, model.version, feature_scaler)
