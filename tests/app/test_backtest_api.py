"""POST /backtest through the real app: folds and overall scores of the served model, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast.backtest import closes_needed
from closecast.bundle import load_forecaster
from closecast.scoring import score_against_naive
from closecast.series import load_csv
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_MODELS, detail_msgs, make_settings
from tests.synthetic import make_closes

FIXTURE_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic.csv"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(FIXTURE_MODELS, max_closes=600, max_backtest_folds=8))) as c:
        yield c


def _dates(n: int, start: str = "2020-01-01") -> list[str]:
    first = np.datetime64(start)
    return [str(first + i) for i in range(n)]


def test_backtest_scores_every_fold_and_matches_the_forecaster(client: TestClient) -> None:
    closes = make_closes(300, level=250.0, seed=3).tolist()
    r = client.post("/backtest", json={"closes": closes, "folds": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "default" and body["model_version"] == FIXTURE_BUNDLE.name
    assert [f["fold"] for f in body["folds"]] == [0, 1, 2]
    assert all(f["in_sample"] is False for f in body["folds"])  # closes the model never saw
    last = body["folds"][-1]
    for scores in (last, body["overall"]):
        assert scores["skill_se"] > 0 and 0 <= scores["dm_pvalue"] <= 1 and scores["dm_lag"] >= 1
        assert scores["verdict"] in {"beats naive", "not distinguishable from naive", "worse than naive"}
    assert last["stop"] == 300 and last["n"] == last["origins"] == last["stop"] - last["start"]
    # the same numbers, one forecast at a time through the forecaster
    model = load_forecaster(FIXTURE_BUNDLE, providers="cpu")
    c = np.asarray(closes)
    origins = range(last["start"], last["stop"])
    predicted = [model.predict_closes(c[None, o - model.window : o])[0, 0] for o in origins]
    expected = score_against_naive(
        c[last["start"] : last["stop"]], np.array(predicted), c[last["start"] - 1 : -1]
    )
    assert last["model"]["mae"] == pytest.approx(expected["model"]["mae"], rel=1e-9)
    assert last["skill"] == pytest.approx(expected["skill"], rel=1e-6, abs=1e-12)
    overall = body["overall"]
    assert overall["n"] == sum(f["n"] for f in body["folds"]) and overall["folds"] == 3
    assert set(overall["coverage"]) == {"80", "95"} and 0 <= overall["coverage"]["95"] <= 1


def test_backtest_horizon_scores_every_step_inside_the_fold(client: TestClient) -> None:
    r = client.post("/backtest", json={"closes": make_closes(200).tolist(), "folds": 2, "horizon": 3})
    assert r.status_code == 200, r.text
    for fold in r.json()["folds"]:
        assert fold["origins"] == fold["stop"] - fold["start"] - 2 and fold["n"] == 3 * fold["origins"]


def test_backtest_of_a_series_the_model_never_saw_has_no_in_sample_fold(client: TestClient) -> None:
    """Dates inside the fixture model's training period (2020-01-01 to 2021-02-03), other closes: the
    calendar overlaps, the data do not, so no fold is in sample."""
    n = 500
    r = client.post("/backtest", json={"closes": make_closes(n).tolist(), "dates": _dates(n), "folds": 4})
    assert r.status_code == 200, r.text
    assert [f["in_sample"] for f in r.json()["folds"]] == [False] * 4


def _training_file() -> tuple[list[float], list[str]]:
    series = load_csv(FIXTURE_CSV)
    assert series.dates is not None
    return series.closes.tolist(), list(series.dates)


def test_backtest_flags_folds_among_the_models_own_training_closes(client: TestClient) -> None:
    """The fixture's own training file: folds with targets before its test part are in sample, the rest
    not; the same closes behind 100 earlier ones are found by their first date."""
    test_start = load_forecaster(FIXTURE_BUNDLE, providers="cpu").manifest["data"]["split"]["test_start"]
    closes, dates = _training_file()
    r = client.post("/backtest", json={"closes": closes, "dates": dates, "folds": 4})
    assert r.status_code == 200, r.text
    folds = r.json()["folds"]
    assert [f["in_sample"] for f in folds] == [f["start"] < test_start for f in folds]
    assert folds[0]["in_sample"] is True and folds[-1]["in_sample"] is False
    earlier = (np.asarray(closes[:100]) * 0.9).tolist()
    r = client.post(
        "/backtest",
        json={"closes": earlier + closes, "dates": _dates(100, "2019-09-23") + dates, "folds": 4},
    )
    assert r.status_code == 200, r.text
    folds = r.json()["folds"]
    assert [f["in_sample"] for f in folds] == [f["start"] < 100 + test_start for f in folds]
    assert any(f["in_sample"] for f in folds)


def test_backtest_too_short_says_how_many_closes_are_needed(client: TestClient) -> None:
    window = int(client.get("/models/current").json()["window"])
    needed = closes_needed(window, 5, 1)
    r = client.post("/backtest", json={"closes": make_closes(needed - 1).tolist()})
    assert r.status_code == 422
    (msg,) = detail_msgs(r)
    assert f"closes has {needed - 1} values" in msg and f"send at least {needed} closes" in msg
    assert client.post("/backtest", json={"closes": make_closes(needed).tolist()}).status_code == 200


def test_backtest_too_many_folds_is_422(client: TestClient) -> None:
    r = client.post("/backtest", json={"closes": make_closes(300).tolist(), "folds": 9})
    assert r.status_code == 422
    assert detail_msgs(r) == ["folds is 9; at most 8 are run (CLOSECAST_MAX_BACKTEST_FOLDS); ask for fewer"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"folds": 0}, "folds is 0"),
        ({"horizon": 31}, "horizon is 31"),
        ({"closes": [1.0] * 601}, "at most 600 are accepted (CLOSECAST_MAX_CLOSES)"),
        ({"dates": ["2020-01-01"]}, "dates has 1 values but closes has 300"),
        ({"extra": 1}, "extra is not a known field"),
    ],
)
def test_backtest_bad_input_is_422_with_a_message(client: TestClient, body: dict, words: str) -> None:
    r = client.post("/backtest", json={"closes": make_closes(300).tolist(), **body})
    assert r.status_code == 422
    assert any(words in m for m in detail_msgs(r)), detail_msgs(r)


def test_backtest_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/backtest", json={"model": "spx", "closes": make_closes(300).tolist()})
    assert r.status_code == 404
    assert r.json()["detail"].startswith("model 'spx' is not in the registry; known models: 'default'")
