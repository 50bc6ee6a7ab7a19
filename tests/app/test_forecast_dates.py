"""``dates`` beside closes: the answer's ``forecast_dates``, through a real server process and the client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest

from closecast.client import Client
from tests.helpers import Server, copy_registry, running_server
from tests.synthetic import make_closes

CLOSES = [float(c) for c in make_closes(60, level=80.0, seed=9)]
WEEKDAYS = [d for d in (date(2024, 1, 1) + timedelta(days=i) for i in range(200)) if d.weekday() < 5][:60]
DATES = [d.isoformat() for d in WEEKDAYS]  # the last, 2024-03-22, is a Friday


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(copy_registry(tmp_path_factory.mktemp("dates") / "models")) as running:
        yield running


def test_daily_dates_give_three_weekdays_after_the_last(server: Server) -> None:
    answer = httpx.post(f"{server.url}/forecast", json={"closes": CLOSES, "dates": DATES, "horizon": 3})
    assert answer.status_code == 200, answer.text
    assert DATES[-1] == "2024-03-22"
    assert answer.json()["forecast_dates"] == ["2024-03-25", "2024-03-26", "2024-03-27"]
    plain = httpx.post(f"{server.url}/forecast", json={"closes": CLOSES, "horizon": 3}).json()
    assert plain["forecast_dates"] is None
    assert plain["forecast"] == answer.json()["forecast"]  # dates change no number


def test_hourly_times_keep_their_zone_and_the_batch_dates_each_series(server: Server) -> None:
    hours = [f"2024-01-0{2 + h // 24}T{h % 24:02d}:00:00+00:00" for h in range(60)]  # to Jan 4, 11:00
    body = {
        "series": [
            {"id": "daily", "closes": CLOSES, "dates": DATES},
            {"id": "bare", "closes": CLOSES},
            {"id": "hourly", "closes": CLOSES, "dates": hours[:60]},
        ],
        "horizon": 2,
    }
    answer = httpx.post(f"{server.url}/forecast/batch", json=body)
    assert answer.status_code == 200, answer.text
    answers = answer.json()["forecasts"]
    assert answers[0]["forecast_dates"] == ["2024-03-25", "2024-03-26"]
    assert answers[1]["forecast_dates"] is None
    assert answers[2]["forecast_dates"] == ["2024-01-04T12:00:00+00:00", "2024-01-04T13:00:00+00:00"]


@pytest.mark.parametrize(
    ("dates", "words"),
    [
        (DATES[:-1], "dates has 59 values but closes has 60"),
        (DATES[::-1], "newest first"),
        ([*DATES[:-1], "next friday"], "'next friday'"),
    ],
)
def test_bad_dates_are_a_422_naming_the_field(server: Server, dates: list[str], words: str) -> None:
    answer = httpx.post(f"{server.url}/forecast", json={"closes": CLOSES, "dates": dates})
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "dates"]
    assert words in problem["msg"]


def test_the_client_carries_forecast_dates(server: Server) -> None:
    with Client(server.url) as cc:
        result = cc.forecast(CLOSES, horizon=3, dates=WEEKDAYS)  # date objects are sent as ISO text
    assert result.forecast_dates == ["2024-03-25", "2024-03-26", "2024-03-27"]
