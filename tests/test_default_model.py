"""The committed default model and fixture keep loading and forecast sanely far from training levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from closecast.bundle import load_forecaster
from closecast.registry import list_versions, read_current

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "registry", [ROOT / "models" / "default", ROOT / "tests" / "fixtures" / "models" / "default"]
)
def test_committed_registry_points_at_a_verified_bundle(registry: Path) -> None:
    current = read_current(registry)
    assert current in list_versions(registry)
    forecaster = load_forecaster(registry / str(current), providers="cpu")
    assert forecaster.window >= 3


def test_default_model_states_its_skill_against_naive() -> None:
    registry = ROOT / "models" / "default"
    m = json.loads((registry / str(read_current(registry)) / "manifest.json").read_text())
    assert m["format_version"] == 2
    assert [s["name"] for s in m["data"]["series"]] == ["sp500_daily", "msft_daily"]
    for test in [m["metrics"]["test"], *(s["test"] for s in m["metrics"]["series"].values())]:
        assert test["skill"] == pytest.approx(1 - test["model"]["mae"] / test["naive"]["mae"])
        assert test["n"] > 900 and set(test["coverage"]) == {"80", "95"}
    assert m["metrics"]["beats_naive"] == (m["metrics"]["test"]["skill"] > 0)


def test_format_1_fixture_still_serves_with_its_own_representation() -> None:
    """Bundles in users' volumes are format 1: they load into the format-1 forecaster, bit for bit as before
    format 2 existed (the fixture's manifest sample is replayed at load)."""
    from closecast.forecaster_v2 import ForecasterV2

    registry = ROOT / "tests" / "fixtures" / "models" / "default"
    forecaster = load_forecaster(registry / str(read_current(registry)), providers="cpu")
    assert forecaster.manifest["format_version"] == 1 and not isinstance(forecaster, ForecasterV2)
    sample = forecaster.manifest["sample"]
    assert forecaster.predict_closes(np.array(sample["closes"]), 1)[:, 0].tolist() == sample["forecast"]


def test_default_model_forecasts_sanely_above_6000_and_at_0_5() -> None:
    """Trained on 1999–2012 levels (under 1600); the recent S&P 500 and a penny stock must not break it."""
    registry = ROOT / "models" / "default"
    forecaster = load_forecaster(registry / str(read_current(registry)), providers="cpu")
    closes = np.loadtxt(ROOT / "data" / "sp500_daily.csv", delimiter=",", skiprows=1, usecols=4)
    window = closes[-forecaster.window :][None, :]
    for level in (6000.0, 0.5):
        scaled = window * (level / window[0, -1])
        forecast = forecaster.predict_closes(scaled, 5)[0]
        assert np.all(np.abs(forecast / level - 1) < 0.05), (level, forecast)
