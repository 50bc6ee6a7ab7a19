"""The Open Inference Protocol through a real server process, driven by ``tritonclient.http`` unmodified:
binary and JSON tensors, T longer than the window, the same answers as ``/forecast/batch``, and the errors
in the protocol's ``{"error": ...}`` shape with their HTTP status.

The infer route calls the very forecaster path ``/forecast/batch`` calls, with the same float64 closes and
the same batch, so the prices are compared exactly (tolerance 0), not approximately.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers import FIXTURE_MODELS, FIXTURE_VERSION, Server, running_server

LEVELS = (80, 95)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(FIXTURE_MODELS) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def window(client: triton.InferenceServerClient) -> int:
    return int(client.get_model_metadata("default")["parameters"]["window"])


def closes_of(n: int, length: int, seed: int = 0) -> np.ndarray:
    """``n`` random walks of ``length`` closes at price levels far apart, rounded to cents."""
    rng = np.random.default_rng(seed)
    levels = 10.0 ** rng.integers(0, 4, size=(n, 1))
    walks = levels * np.exp(np.cumsum(rng.normal(0, 0.01, size=(n, length)), axis=1))
    return np.asarray(walks.round(2), dtype=np.float64)


def infer(
    client: triton.InferenceServerClient,
    closes: np.ndarray,
    binary: bool,
    datatype: str = "FP64",
    **parameters: Any,
) -> dict[str, np.ndarray]:
    """Every output of one infer call, by name (binary or JSON tensors both ways)."""
    tensor = triton.InferInput("closes", list(closes.shape), datatype)
    tensor.set_data_from_numpy(closes.astype(np.float32 if datatype == "FP32" else np.float64), binary)
    levels = parameters.get("levels", list(LEVELS))
    levels = [int(v) for v in levels.split(",")] if isinstance(levels, str) else levels
    names = ["forecast", *(f"{side}_{lv}" for lv in levels for side in ("lower", "upper"))]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
    result = client.infer("default", [tensor], outputs=outputs, parameters=parameters or None)
    return {name: result.as_numpy(name) for name in names}


def batch_answer(
    server: Server, closes: np.ndarray, horizon: int, levels: list[int]
) -> dict[str, np.ndarray]:
    """``/forecast/batch``'s answer for the same series, as the protocol's output tensors."""
    body = {
        "series": [{"id": str(i), "closes": row.tolist()} for i, row in enumerate(closes)],
        "horizon": horizon,
        "level": levels,
    }
    response = httpx.post(server.url + "/forecast/batch", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answers = response.json()["forecasts"]
    out = {"forecast": np.array([a["forecast"] for a in answers])}
    for level in levels:
        for side in ("lower", "upper"):
            out[f"{side}_{level}"] = np.array([a["intervals"][str(level)][side] for a in answers])
    return out


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_equals_forecast_batch_for_series_longer_than_the_window(
    server: Server, client: triton.InferenceServerClient, window: int, binary: bool
) -> None:
    closes = closes_of(6, window + 37, seed=1)
    got = infer(client, closes, binary, horizon=3, levels=[80, 95])
    expected = batch_answer(server, closes, 3, [80, 95])
    assert set(got) == set(expected)
    for name, values in expected.items():
        assert got[name].shape == (6, 3), name
        assert got[name].dtype == np.float64
        np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_infer_defaults_to_one_step_and_levels_80_95_all_outputs_binary(
    server: Server, client: triton.InferenceServerClient, window: int
) -> None:
    closes = closes_of(3, window, seed=2)
    tensor = triton.InferInput("closes", list(closes.shape), "FP64")
    tensor.set_data_from_numpy(closes)
    result = client.infer("default", [tensor])  # no outputs named: tritonclient asks for all, binary
    expected = batch_answer(server, closes, 1, list(LEVELS))
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
    for name in names:
        np.testing.assert_array_equal(result.as_numpy(name), expected[name], err_msg=name)


def test_fp32_closes_are_forecast_as_their_float64_values(
    server: Server, client: triton.InferenceServerClient, window: int
) -> None:
    closes = closes_of(4, window + 5, seed=3).astype(np.float32)
    for binary in (True, False):
        got = infer(client, closes, binary, datatype="FP32", levels="80")
        expected = batch_answer(server, closes.astype(np.float64), 1, [80])
        for name, values in expected.items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)


def test_one_series_and_mixed_output_encodings(
    server: Server, client: triton.InferenceServerClient, window: int
) -> None:
    closes = closes_of(1, window + 1, seed=4)
    tensor = triton.InferInput("closes", list(closes.shape), "FP64")
    tensor.set_data_from_numpy(closes, binary_data=False)
    outputs = [
        triton.InferRequestedOutput("upper_90", binary_data=True),
        triton.InferRequestedOutput("forecast", binary_data=False),
    ]
    result = client.infer("default", [tensor], outputs=outputs, parameters={"levels": 90, "horizon": 2})
    expected = batch_answer(server, closes, 2, [90])
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["upper_90", "forecast"]
    assert "data" in response["outputs"][1] and "binary_data_size" in response["outputs"][0]["parameters"]
    assert response["model_name"] == "default" and response["model_version"] == FIXTURE_VERSION
    np.testing.assert_array_equal(result.as_numpy("upper_90"), expected["upper_90"])
    np.testing.assert_array_equal(result.as_numpy("forecast"), expected["forecast"])


def test_a_version_path_serves_that_version(
    server: Server, client: triton.InferenceServerClient, window: int
) -> None:
    closes = closes_of(2, window, seed=5)
    tensor = triton.InferInput("closes", list(closes.shape), "FP64")
    tensor.set_data_from_numpy(closes)
    result = client.infer("default", [tensor], model_version=FIXTURE_VERSION)
    assert result.get_response()["model_version"] == FIXTURE_VERSION
    np.testing.assert_array_equal(
        result.as_numpy("forecast"), batch_answer(server, closes, 1, [80])["forecast"]
    )
    with pytest.raises(InferenceServerException) as caught:
        client.infer("default", [tensor], model_version="20200101T000000Z-00000000")
    assert caught.value.status() == "404"
    assert "'20200101T000000Z-00000000' is not a version of model 'default'" in caught.value.message()


def test_health_and_metadata(server: Server, client: triton.InferenceServerClient, window: int) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("default") and client.is_model_ready("default", FIXTURE_VERSION)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("default")
    assert meta["inputs"] == [{"name": "closes", "datatype": "FP64", "shape": [-1, -1]}]
    assert [o["name"] for o in meta["outputs"]] == [
        "forecast",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
    ]
    assert FIXTURE_VERSION in meta["versions"] and window >= 2
    assert not client.is_model_ready("nope")


# --- errors: the protocol's shape, the right status -------------------------------------------------------


def post(server: Server, body: dict[str, Any], path: str = "/v2/models/default/infer") -> httpx.Response:
    return httpx.post(server.url + path, content=json.dumps(body), timeout=30)


def closes_tensor(values: Any, shape: list[int], datatype: str = "FP64") -> dict[str, Any]:
    return {"inputs": [{"name": "closes", "shape": shape, "datatype": datatype, "data": values}]}


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    return str(body["error"])


def test_series_shorter_than_the_window_are_refused(
    server: Server, client: triton.InferenceServerClient, window: int
) -> None:
    closes = closes_of(3, window - 1)
    message = error_of(post(server, closes_tensor(closes.ravel().tolist(), [3, window - 1])), 400)
    assert message == (
        f"closes has shape [3, {window - 1}]: {window - 1} closes per series but the model needs at least "
        f"{window} (its window); send [N, T] with T >= {window}"
    )
    tensor = triton.InferInput("closes", [3, window - 1], "FP64")
    tensor.set_data_from_numpy(closes)
    with pytest.raises(InferenceServerException) as caught:  # tritonclient shows the same message
        client.infer("default", [tensor])
    assert caught.value.status() == "400" and caught.value.message() == message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (closes_tensor([100.0] * 40, [40]), "inputs[0].shape is [40]; send [N, T]"),
        (closes_tensor([100.0] * 40, [1, 40, 1]), "inputs[0].shape is [1, 40, 1]; send [N, T]"),
        (closes_tensor([100.0] * 40, [1, 40], "INT32"), 'inputs[0].datatype is "INT32"; send FP64 or FP32'),
        (closes_tensor([100.0] * 39, [1, 40]), "inputs[0].data is"),
        (closes_tensor(["1.5"] * 40, [1, 40]), "send 40 numbers"),
        (closes_tensor([100.0] * 39 + [-1.0], [1, 40]), "series[0].closes[39] is -1.0; prices must be > 0"),
        (
            {"inputs": [{"name": "close", "shape": [1, 40], "datatype": "FP64", "data": []}]},
            'name is "close"',
        ),
        ({**closes_tensor([100.0] * 40, [1, 40]), "parameters": {"horizon": 31}}, "CLOSECAST_MAX_HORIZON"),
        ({**closes_tensor([100.0] * 40, [1, 40]), "parameters": {"horizon": 0}}, "parameters.horizon is 0"),
        ({**closes_tensor([100.0] * 40, [1, 40]), "parameters": {"levels": [80, 80]}}, "each level once"),
        ({**closes_tensor([100.0] * 40, [1, 40]), "parameters": {"step": 1}}, "parameters.step is not"),
        ({**closes_tensor([100.0] * 40, [1, 40]), "outputs": [{"name": "lower_50"}]}, "'lower_50'"),
        (
            {
                "inputs": [
                    *closes_tensor([100.0] * 40, [1, 40])["inputs"],
                    {"name": "volume", "shape": [1, 40], "datatype": "FP64", "data": [1.0] * 40},
                ]
            },
            "inputs are closes, volume but model 'default'",
        ),
    ],
)
def test_bad_requests_are_refused_with_400(server: Server, body: dict[str, Any], expected: str) -> None:
    assert expected in error_of(post(server, body), 400)


def test_unknown_model_is_404_in_the_protocol_shape(server: Server) -> None:
    message = error_of(post(server, closes_tensor([100.0] * 40, [1, 40]), "/v2/models/nope/infer"), 404)
    assert message.startswith("model 'nope' is not in the registry; known models: 'default'")
    assert error_of(httpx.get(server.url + "/v2/models/nope", timeout=10), 404) == message


def test_binary_body_errors(server: Server, window: int) -> None:
    closes = closes_of(2, window)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "closes",
                    "shape": [2, window],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": closes.nbytes},
                }
            ]
        }
    ).encode()

    def send(data: bytes, length: str) -> httpx.Response:
        headers = {"Inference-Header-Content-Length": length, "Content-Type": "application/octet-stream"}
        return httpx.post(server.url + "/v2/models/default/infer", content=data, headers=headers, timeout=30)

    ok = send(header + closes.tobytes(), str(len(header)))
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"  # JSON out by default
    short = error_of(send(header + closes.tobytes()[:-8], str(len(header))), 400)
    assert short == (
        f"inputs[0] needs {closes.nbytes} bytes of binary data from byte 0 but the body has only "
        f"{closes.nbytes - 8} after the header; send every input's bytes"
    )
    assert "Inference-Header-Content-Length is 'x'" in error_of(send(header, "x"), 400)
    assert "the inputs' binary_data_size add up" in error_of(
        send(header + closes.tobytes() + b"x", str(len(header))), 400
    )


@pytest.mark.parametrize("as_text", [True, False], ids=["comma-separated", "list"])
def test_dates_give_forecast_dates_as_forecast_batch_does(
    server: Server, client: triton.InferenceServerClient, window: int, as_text: bool
) -> None:
    closes = closes_of(2, window + 10, seed=7)
    start = np.datetime64("2024-01-01")
    days = [str(d) for d in np.busday_offset(start, np.arange(closes.shape[1]), roll="forward")]
    tensor = triton.InferInput("closes", list(closes.shape), "FP64")
    tensor.set_data_from_numpy(closes)
    dates: Any = ",".join(days) if as_text else days
    result = client.infer("default", [tensor], parameters={"horizon": 3, "dates": dates})
    got = json.loads(result.get_response()["parameters"]["forecast_dates"])
    body = {"series": [{"id": "a", "closes": closes[0].tolist(), "dates": days}], "horizon": 3}
    expected = httpx.post(server.url + "/forecast/batch", json=body, timeout=30).json()["forecasts"][0]
    assert got == expected["forecast_dates"] and len(got) == 3
    short = httpx.post(
        server.url + "/v2/models/default/infer",
        json={
            "inputs": [{"name": "closes", "shape": list(closes.shape), "datatype": "FP64",
                        "data": closes.ravel().tolist()}],
            "parameters": {"dates": days[1:]},
        },
    )  # fmt: skip
    assert short.status_code == 400
    assert f"dates has {len(days) - 1} values but closes has {len(days)}" in short.json()["error"]
