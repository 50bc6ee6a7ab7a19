"""Bad input: 422 naming the field and quoting the value, 503 before a model; never a 500 (sizes and
body bytes: test_bodies.py)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.main import create_app
from tests.helpers import FIXTURE_MODELS, detail_msgs, make_settings
from tests.synthetic import calm_walk


def _raw(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def test_negative_close_is_422_naming_index_and_value(client: TestClient) -> None:
    series = calm_walk()
    series[17] = -3.2
    response = client.post("/forecast", json={"closes": series})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "closes", 17],
            "msg": "closes[17] is -3.2; prices must be > 0",
            "type": "price_not_positive",
            "input": -3.2,
        }
    ]


def test_zero_close_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": [*calm_walk(20), 0]})
    assert detail_msgs(response) == ["closes[20] is 0; prices must be > 0"]


def test_nan_close_is_422(client: TestClient) -> None:
    response = _raw(client, "/forecast", '{"closes": [1.0, 2.0, NaN, 3.0]}')
    assert response.status_code == 422
    assert detail_msgs(response) == ["closes[2] is NaN; prices must be finite numbers"]
    assert response.json()["detail"][0]["input"] == "NaN"


def test_infinite_close_is_422(client: TestClient) -> None:
    response = _raw(client, "/forecast", '{"closes": [1.0, -Infinity, 1e999]}')
    assert detail_msgs(response) == [
        "closes[1] is -Infinity; prices must be finite numbers",
        "closes[2] is Infinity; prices must be finite numbers",
    ]


def test_huge_integer_close_is_422(client: TestClient) -> None:
    response = _raw(client, "/forecast", '{"closes": [1, 1' + "0" * 400 + "]}")
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith("closes[1] is 1000000000")
    assert detail_msgs(response)[0].endswith("…; prices must be at most 1.8e308")


def test_string_close_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": [1.0, "2.0", 3.0]})
    assert detail_msgs(response) == ['closes[1] is "2.0"; prices must be numbers']


def test_closes_of_wrong_type_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": {"a": 1}})
    assert detail_msgs(response) == ['closes is {"a": 1}; input should be a valid array']


def test_empty_closes_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": []})
    assert detail_msgs(response) == [
        "closes is []; list should have at least 2 items after validation, not 0"
    ]


def test_missing_closes_is_422(client: TestClient) -> None:
    assert detail_msgs(client.post("/forecast", json={"horizon": 2})) == ["closes is required"]


def test_missing_body_is_422(client: TestClient) -> None:
    assert detail_msgs(client.post("/forecast")) == ["body is required; send a JSON object"]


def test_invalid_json_is_422(client: TestClient) -> None:
    response = _raw(client, "/forecast", '{"closes": [1, 2')
    assert response.status_code == 422
    assert detail_msgs(response) == [
        "body is not valid JSON (EOF while parsing a list at line 1 column 16); send a JSON object"
    ]


def test_unknown_field_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "horizion": 3})
    assert detail_msgs(response) == ["horizion is not a known field; remove it (see /docs for the schema)"]


def test_series_shorter_than_window_is_422(client: TestClient, window: int) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(5)})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "closes"],
            "msg": f"closes has 5 values but the model needs at least {window} (its window); "
            f"send at least {window}",
            "type": "series_too_short",
            "input": 5,
        }
    ]


def test_series_longer_than_max_closes_is_422() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS, max_closes=50))) as c:
        response = c.post("/forecast", json={"closes": calm_walk(51)})
    assert detail_msgs(response) == [
        "closes has 51 values but at most 50 are accepted (CLOSECAST_MAX_CLOSES); send the latest 50"
    ]


def test_horizon_beyond_setting_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "horizon": 31})
    assert detail_msgs(response) == ["horizon is 31; at most 30 steps are served (CLOSECAST_MAX_HORIZON)"]


def test_horizon_zero_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "horizon": 0})
    assert detail_msgs(response) == ["horizon is 0; input should be greater than or equal to 1"]


def test_fractional_horizon_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "horizon": 1.5})
    assert detail_msgs(response) == ["horizon is 1.5; input should be a valid integer"]


def test_level_out_of_range_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "level": [80, 100]})
    assert detail_msgs(response) == ["level[1] is 100; input should be less than or equal to 99"]


def test_duplicate_level_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": calm_walk(), "level": [95, 80, 95]})
    assert detail_msgs(response) == [
        "level is [95, 80, 95]; levels must be unique; 95 appears more than once"
    ]


def test_forecast_beyond_float64_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json={"closes": [1e308] * 19 + [1.79e308]})
    assert response.status_code == 422
    assert detail_msgs(response) == [
        "closes ends at 1.79e+308, where the forecast or its interval does not fit a float64 "
        "(above 1.8e308 or below 2.2e-308); send prices in another unit"
    ]


def test_batch_bad_close_names_the_series_path(client: TestClient) -> None:
    bad = calm_walk()
    bad[5] = -1.5
    body = {"series": [{"id": "ok", "closes": calm_walk()}, {"id": "bad", "closes": bad}]}
    response = client.post("/forecast/batch", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "series", 1, "closes", 5]
    assert detail_msgs(response) == ["series[1].closes[5] is -1.5; prices must be > 0"]


def test_batch_lists_every_short_series(client: TestClient, window: int) -> None:
    body = {
        "series": [
            {"id": "a", "closes": calm_walk(3)},
            {"id": "b", "closes": calm_walk()},
            {"id": "c", "closes": calm_walk(4)},
        ]
    }
    need = f"but the model needs at least {window} (its window); send at least {window}"
    assert detail_msgs(client.post("/forecast/batch", json=body)) == [
        f"series[0].closes has 3 values {need}",
        f"series[2].closes has 4 values {need}",
    ]


def test_batch_empty_id_is_422(client: TestClient) -> None:
    response = client.post("/forecast/batch", json={"series": [{"id": "", "closes": calm_walk()}]})
    assert detail_msgs(response) == ['series[0].id is ""; string should have at least 1 character']


def test_batch_with_too_many_series_is_413() -> None:
    with TestClient(create_app(make_settings(FIXTURE_MODELS, max_batch_series=3))) as c:
        body = {"series": [{"id": str(k), "closes": calm_walk()} for k in range(4)]}
        response = c.post("/forecast/batch", json=body)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "series has 4 entries but at most 3 are accepted per request (CLOSECAST_MAX_BATCH_SERIES); "
        "split the batch"
    }


def test_forecast_before_model_is_loaded_is_503() -> None:
    client = TestClient(create_app(make_settings(FIXTURE_MODELS)))  # no `with`: the lifespan has not run
    response = client.post("/forecast", json={"closes": calm_walk()})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"detail": "no verified model is loaded yet; retry once /readyz answers 200"}


def test_batch_before_model_is_loaded_is_503() -> None:
    client = TestClient(create_app(make_settings(FIXTURE_MODELS)))
    assert (
        client.post("/forecast/batch", json={"series": [{"id": "a", "closes": calm_walk()}]}).status_code
        == 503
    )


def test_body_sent_without_json_content_type_is_422(client: TestClient) -> None:
    response = client.post("/forecast", content=b'{"closes": [1, 2]}', headers={"content-type": "text/plain"})
    assert detail_msgs(response) == ["body was not read as JSON; send it with Content-Type: application/json"]


def test_body_that_is_not_an_object_is_422(client: TestClient) -> None:
    response = client.post("/forecast", json=[1, 2])
    assert detail_msgs(response) == ["body is [1, 2]; send a JSON object (see /docs for the schema)"]
