"""POST /forecast, /forecast/batch and /noop/forecast: shapes, intervals, horizons, batches, warnings."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_MODELS, FORMAT1_BUNDLE, make_settings
from tests.synthetic import calm_walk


def _forecast(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/forecast", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_forecast_returns_one_value_per_horizon_step(client: TestClient) -> None:
    body = _forecast(client, closes=calm_walk(), horizon=7)
    assert len(body["forecast"]) == 7
    assert all(len(band["lower"]) == len(band["upper"]) == 7 for band in body["intervals"].values())


def test_forecast_defaults_to_one_step_and_levels_80_95(format1_client: TestClient) -> None:
    body = _forecast(format1_client, closes=calm_walk())
    assert len(body["forecast"]) == 1
    assert set(body["intervals"]) == {"80", "95"}
    assert body["model_version"] == FORMAT1_BUNDLE.name
    assert body["last_close"] == calm_walk()[-1]
    assert body["warnings"] == []


def test_forecast_reproduces_the_manifest_sample(client: TestClient) -> None:
    sample = json.loads((FIXTURE_BUNDLE / "manifest.json").read_text())["sample"]
    for window, expected in zip(sample["closes"], sample["forecast"], strict=True):
        got = _forecast(client, closes=window)["forecast"][0]
        assert got == pytest.approx(expected, rel=sample["tolerance"])


def test_forecast_uses_only_the_latest_window(client: TestClient, window: int) -> None:
    long = calm_walk(200)
    assert _forecast(client, closes=long)["forecast"] == _forecast(client, closes=long[-window:])["forecast"]


def test_forecast_intervals_contain_the_forecast(client: TestClient) -> None:
    body = _forecast(client, closes=calm_walk(), horizon=5)
    for band in body["intervals"].values():
        for lo, f, hi in zip(band["lower"], body["forecast"], band["upper"], strict=True):
            assert lo < f < hi


def test_forecast_95_interval_is_wider_than_80(client: TestClient) -> None:
    bands = _forecast(client, closes=calm_walk(), horizon=5)["intervals"]
    for h in range(5):
        assert (
            bands["95"]["upper"][h] - bands["95"]["lower"][h]
            > bands["80"]["upper"][h] - bands["80"]["lower"][h]
        )


def test_forecast_intervals_widen_with_horizon(client: TestClient) -> None:
    band = _forecast(client, closes=calm_walk(), horizon=10, level=[80])["intervals"]["80"]
    widths = np.log(np.array(band["upper"])) - np.log(np.array(band["lower"]))
    assert np.all(np.diff(widths) > 0)
    assert widths[3] == pytest.approx(2 * widths[0])  # sqrt(4) = 2: residual quantiles widened by sqrt(h)


def _volatility(series: list[float], window: int, floor: float) -> float:
    return max(float(np.diff(np.log(series[-window:])).std()), floor)


def test_forecast_interval_is_quantiles_times_window_volatility(
    format1_client: TestClient, window: int
) -> None:
    intervals = json.loads((FORMAT1_BUNDLE / "manifest.json").read_text())["intervals"]
    assert intervals["units"] == "window_volatility"
    q_lo = np.interp(0.1, intervals["probabilities"], intervals["residual_quantiles"])
    q_hi = np.interp(0.9, intervals["probabilities"], intervals["residual_quantiles"])
    series = calm_walk()
    vol = _volatility(series, window, intervals["volatility_floor"])
    body = _forecast(format1_client, closes=series, level=[80], horizon=4)
    f, band = np.array(body["forecast"]), body["intervals"]["80"]
    widen = vol * np.sqrt([1, 2, 3, 4])
    np.testing.assert_allclose(band["lower"], f * np.exp(q_lo * widen), rtol=1e-12)
    np.testing.assert_allclose(band["upper"], f * np.exp(q_hi * widen), rtol=1e-12)


def test_forecast_interval_is_wider_for_a_turbulent_window(format1_client: TestClient, window: int) -> None:
    calm, turbulent = calm_walk(seed=3), calm_walk(seed=3)
    for i in range(len(turbulent) - window, len(turbulent), 2):  # zig-zag inside the training range
        turbulent[i] *= 1.012

    def log_width(series: list[float]) -> float:
        band = _forecast(format1_client, closes=series, level=[80])["intervals"]["80"]
        return float(np.log(band["upper"][0] / band["lower"][0]))

    floor = json.loads((FORMAT1_BUNDLE / "manifest.json").read_text())["intervals"]["volatility_floor"]
    ratio = _volatility(turbulent, window, floor) / _volatility(calm, window, floor)
    assert ratio > 2
    assert log_width(turbulent) / log_width(calm) == pytest.approx(ratio, rel=1e-9)


def test_forecast_interval_of_a_flat_window_uses_the_volatility_floor(format1_client: TestClient) -> None:
    intervals = json.loads((FORMAT1_BUNDLE / "manifest.json").read_text())["intervals"]
    q_lo = np.interp(0.1, intervals["probabilities"], intervals["residual_quantiles"])
    body = _forecast(format1_client, closes=[50.0] * 30, level=[80])
    assert body["intervals"]["80"]["lower"][0] == pytest.approx(
        body["forecast"][0] * np.exp(q_lo * intervals["volatility_floor"]), rel=1e-12
    )


def test_forecast_horizon_feeds_each_prediction_back(client: TestClient, window: int) -> None:
    series = calm_walk()
    two_steps = _forecast(client, closes=series, horizon=2)["forecast"]
    one_step = _forecast(client, closes=series)["forecast"][0]
    assert two_steps[0] == pytest.approx(one_step, rel=1e-12)
    # the second step is the one-step forecast of the window shifted by the first prediction (float32 input)
    shifted = _forecast(client, closes=[*series[-(window - 1) :], one_step])["forecast"][0]
    assert two_steps[1] == pytest.approx(shifted, rel=1e-5)


@pytest.mark.parametrize("factor", [100.0, 0.005])
def test_forecast_ratio_is_invariant_to_price_level(client: TestClient, factor: float) -> None:
    base = calm_walk(40, level=1.0)
    a = _forecast(client, closes=base, horizon=3)
    b = _forecast(client, closes=[c * factor for c in base], horizon=3)
    for fa, fb in zip(a["forecast"], b["forecast"], strict=True):
        assert fb / b["last_close"] == pytest.approx(fa / a["last_close"], abs=1e-6)


def test_forecast_warns_when_a_fall_exceeds_training(format1_client: TestClient, window: int) -> None:
    series = calm_walk(40)
    series[-1] = series[-2] * 0.769  # -23.1%
    body = _forecast(format1_client, closes=series)
    assert body["warnings"] == [
        "closes[38]→closes[39] moved -23.1%, beyond the largest fall seen in training (-2.1%); "
        "treat this forecast with care"
    ]


def test_forecast_warns_when_a_rise_exceeds_training(format1_client: TestClient) -> None:
    series = calm_walk(40)
    series[35] = series[34] * 1.05
    body = _forecast(format1_client, closes=series)
    assert body["warnings"][0].startswith("closes[34]→closes[35] moved +5.0%, beyond the largest rise seen")
    assert "(+1.8%)" in body["warnings"][0]


def test_forecast_ignores_moves_before_the_latest_window(format1_client: TestClient) -> None:
    series = calm_walk(60)
    series[2] = series[1] * 0.5
    assert _forecast(format1_client, closes=series)["warnings"] == []


def test_forecast_warning_increments_the_counter(format1_client: TestClient) -> None:
    def count() -> float:
        for line in format1_client.get("/metrics").text.splitlines():
            if line.startswith('closecast_input_warnings_total{kind="beyond_training_range"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    series = calm_walk(40)
    series[-1] = series[-2] * 1.5
    series[-3] = series[-4] * 0.5  # a fall, then a rise back: three warnings in all
    assert len(_forecast(format1_client, closes=series)["warnings"]) == 3
    assert count() == before + 3


def test_batch_answers_in_the_order_given(client: TestClient) -> None:
    ids = ["z", "a", "m", "b"]
    body = {"series": [{"id": i, "closes": calm_walk(30 + k, seed=k)} for k, i in enumerate(ids)]}
    response = client.post("/forecast/batch", json=body)
    assert response.status_code == 200, response.text
    assert [f["id"] for f in response.json()["forecasts"]] == ids
    assert response.json()["model_version"] == FIXTURE_BUNDLE.name


def test_batch_equals_single_forecasts(client: TestClient) -> None:
    series = [calm_walk(20 + 7 * k, level=10.0**k, seed=k) for k in range(5)]
    series[3][-1] *= 0.8  # one with a warning
    batch = client.post(
        "/forecast/batch",
        json={
            "series": [{"id": str(k), "closes": s} for k, s in enumerate(series)],
            "horizon": 4,
            "level": [50, 90],
        },
    ).json()["forecasts"]
    for s, item in zip(series, batch, strict=True):
        single = _forecast(client, closes=s, horizon=4, level=[50, 90])
        assert item["forecast"] == pytest.approx(single["forecast"], rel=1e-6)
        assert item["intervals"]["90"]["upper"] == pytest.approx(single["intervals"]["90"]["upper"], rel=1e-6)
        assert item["last_close"] == single["last_close"]
        assert item["warnings"] == single["warnings"]


class _CountingSession:
    """Wraps an ONNX Runtime session: counts calls, records batch sizes and the calling thread."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batches: list[int] = []
        self.threads: list[str] = []

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.batches.append(next(iter(feeds.values())).shape[0])
        self.threads.append(threading.current_thread().name)
        return self.session.run(outputs, feeds)


def test_batch_makes_one_model_call_per_step_for_all_series() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS))) as c:
        model = c.app.state.holder.current  # type: ignore[attr-defined]
        model.session = counting = _CountingSession(model.session)
        body = {"series": [{"id": str(k), "closes": calm_walk(40, seed=k)} for k in range(25)], "horizon": 6}
        assert c.post("/forecast/batch", json=body).status_code == 200
    assert counting.batches == [25] * 6


def test_batch_above_threshold_runs_off_the_event_loop() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS, inline_batch_threshold=2))) as c:
        model = c.app.state.holder.current  # type: ignore[attr-defined]
        model.session = counting = _CountingSession(model.session)
        for n in (2, 3):
            body = {"series": [{"id": str(k), "closes": calm_walk(40, seed=k)} for k in range(n)]}
            assert c.post("/forecast/batch", json=body).status_code == 200
    inline, threaded = counting.threads
    assert inline != threaded


def test_noop_forecast_answers_the_last_close_without_inference(client: TestClient) -> None:
    series = calm_walk()
    response = client.post("/noop/forecast", json={"closes": series, "horizon": 3})
    assert response.status_code == 200
    assert response.json()["forecast"] == [series[-1]] * 3
    assert response.json()["intervals"] == {}


def test_noop_forecast_validates_like_forecast(client: TestClient) -> None:
    response = client.post("/noop/forecast", json={"closes": [1.0, 2.0, -3.0]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "closes[2] is -3.0; prices must be > 0"


def test_noop_forecast_is_absent_unless_enabled() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS, enable_noop=False))) as c:
        assert c.post("/noop/forecast", json={"closes": calm_walk()}).status_code == 404
