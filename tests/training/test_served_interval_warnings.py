"""Format-2 warnings and per-step tables through the real app and ONNX Runtime, on tiny models trained here:
an extreme last move, a fallback interval table, and steps 2..5 served from their own tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast.config import Config
from closecast.extremes import EXTREME_UNITS
from closecast.intervals import PROBABILITIES
from closecast.registry import new_version_id, set_current
from closecast.series import load_csv
from tests.helpers import make_settings
from tests.synthetic import make_closes, write_csv
from tests.training.conftest import TINY
from training.pipeline import run_training


def _registry(root: Path, closes: np.ndarray, **overrides: Any) -> Path:
    """A registry whose model ``default`` is a tiny format-2 bundle trained on ``closes``."""
    models = root / "models"
    version = new_version_id()
    csv = write_csv(root / "prices.csv", closes)
    run_training(
        load_csv(csv), Config.from_overrides({**TINY, **overrides}), models / "default" / version, quiet=True
    )
    set_current(models / "default", version)
    return models


@pytest.fixture(scope="module")
def short_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Trained on 300 closes: too few calibration residuals, so both tables are fallbacks."""
    models = _registry(tmp_path_factory.mktemp("short"), make_closes(300), epochs=2)
    with TestClient(create_app(make_settings(models))) as client:
        yield client


@pytest.fixture(scope="module")
def long_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Trained on 2000 closes: calibrated tables with per-step tables."""
    models = _registry(tmp_path_factory.mktemp("long"), make_closes(2000, seed=5), epochs=2)
    bundle = next(p for p in (models / "default").iterdir() if p.is_dir())
    return models, json.loads((bundle / "manifest.json").read_text())


def _post(client: TestClient, closes: list[float], horizon: int = 1) -> dict[str, Any]:
    response = client.post("/forecast", json={"closes": closes, "horizon": horizon})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_seventy_percent_fall_gets_a_warning_naming_it(short_client: TestClient) -> None:
    closes = make_closes(100, seed=11).tolist()
    closes[-1] = closes[-2] * 0.3
    for sent in (closes, closes[-40:], closes[-12:]):  # EWMA reference, window RMS reference, a bare window
        extreme = [w for w in _post(short_client, sent)["warnings"] if "typical move" in w]
        assert len(extreme) == 1, sent
        n = len(sent)
        assert extreme[0].startswith(f"closes[{n - 2}]→closes[{n - 1}] moved -70.0%")
        assert f"more than {EXTREME_UNITS:g}" in extreme[0]


def test_a_move_too_large_for_a_percent_gets_a_422_not_a_500(short_client: TestClient) -> None:
    """The contract test's find: a rise from 0.001 to 4e307 (a log return of 715) overflowed the warning's
    percent (a 500 where warnings are errors). Its interval cannot fit a float64 either: a 422 naming why."""
    closes = [2.2363711500757036e185, 4.054811132456644e246, 4.02783966268626e246, 4.0278396720175984e246]
    closes += [1.3497769604195987e308, 1.4045119629029623e308, 1.0, 1.0, 1.0, 0.001, 4.182631794571178e307]
    response = short_client.post("/forecast", json={"closes": closes})
    assert response.status_code == 422, response.text
    assert [d["type"] for d in response.json()["detail"]] == ["forecast_not_finite"]


def test_ordinary_moves_get_no_extreme_warning_alone_or_in_a_batch(short_client: TestClient) -> None:
    calm = make_closes(100, seed=12).tolist()
    jump = 1.8 * calm[-4] / calm[-3]  # closes[97] = 1.8 x closes[96], the later moves kept: still recent
    crash = calm[:-3] + [c * jump for c in calm[-3:]]
    assert not [w for w in _post(short_client, calm)["warnings"] if "typical move" in w]
    body = {"series": [{"id": "calm", "closes": calm}, {"id": "crash", "closes": crash}]}
    response = short_client.post("/forecast/batch", json=body)
    assert response.status_code == 200, response.text
    warned = {
        f["id"]: [w for w in f["warnings"] if "typical move" in w] for f in response.json()["forecasts"]
    }
    assert warned["calm"] == []
    assert len(warned["crash"]) == 1 and "moved +80.0%" in warned["crash"][0]


def test_every_forecast_from_a_fallback_table_says_so(short_client: TestClient) -> None:
    for n in (12, 100):  # the window table, then the EWMA table: both fallbacks here
        warnings = _post(short_client, make_closes(n, seed=13).tolist())["warnings"]
        assert any("fallback table (synthetic_conformal" in w for w in warnings), warnings
    metrics = short_client.get("/metrics").text
    assert 'closecast_input_warnings_total{kind="fallback_intervals"}' in metrics


def test_a_calibrated_model_serves_each_step_from_its_own_table(
    long_model: tuple[Path, dict[str, Any]],
) -> None:
    models, manifest = long_model
    table = manifest["intervals"]["tables"]["window"]
    assert table["method"] == "conformal" and len(table["steps"]) == 4
    closes = make_closes(30, seed=14).tolist()  # 29 returns: the window table
    with TestClient(create_app(make_settings(models))) as client:
        body = _post(client, closes, horizon=7)
    assert not [w for w in body["warnings"] if "fallback" in w]
    forecast, band = np.array(body["forecast"]), body["intervals"]["80"]
    returns = np.diff(np.log(closes))[-(manifest["input"]["window"] - 1) :]
    scale = float(np.sqrt(np.mean(returns**2)))
    upper = np.log(np.array(band["upper"]) / forecast) / (scale * np.sqrt(np.arange(1, 8)))
    tables = [table["residual_quantiles"]] + [s["residual_quantiles"] for s in table["steps"]]
    expected = [float(np.interp(0.9, PROBABILITIES, tables[min(h, 4)])) for h in range(7)]
    np.testing.assert_allclose(upper, expected, rtol=1e-9)


def test_one_series_alone_and_in_a_batch_get_the_same_answer(long_model: tuple[Path, dict[str, Any]]) -> None:
    """The one-series path (Python floats) and the batch path agree on prices and warnings, per-step tables
    and an extreme move included."""
    from closecast.bundle import load_forecaster

    models, _ = long_model
    bundle = next(p for p in (models / "default").iterdir() if p.is_dir())
    forecaster = load_forecaster(bundle, providers="cpu")
    crash = make_closes(120, seed=15).tolist()
    crash[-1] = crash[-2] * 0.3
    for closes in (make_closes(30, seed=16).tolist(), make_closes(120, seed=17).tolist(), crash):
        alone = forecaster.forecast([closes], 7).items[0]
        batch = forecaster.forecast([closes, make_closes(90, seed=18).tolist()], 7).items[0]
        assert alone.forecast == batch.forecast
        assert alone.intervals == batch.intervals
        assert alone.warnings == batch.warnings


def test_a_bundle_with_a_broken_step_table_is_refused(
    long_model: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import shutil

    from closecast.bundle import load_forecaster
    from closecast.errors import BundleInvalid

    models, recorded = long_model
    manifest = json.loads(json.dumps(recorded))  # a copy: the fixture's manifest is shared
    bundle = shutil.copytree(next(p for p in (models / "default").iterdir() if p.is_dir()), tmp_path / "b")
    manifest["intervals"]["tables"]["ewma"]["steps"][1]["residual_quantiles"].reverse()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleInvalid, match="ewma step 3: intervals must have increasing probabilities"):
        load_forecaster(bundle, providers="cpu")
