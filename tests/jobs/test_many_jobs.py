"""POST /train on several series: JSON `series`, several uploaded files, a long-format upload with
`id_column`; the refusals (422/413) of conflicting or bad forms, with the CLI's per-series messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import copy_registry, detail_msgs
from tests.jobs.helpers import AUTH, build_app, trainer_settings, wait_status
from tests.synthetic import make_closes, write_csv, write_long_csv

TINY = {"window": 11, "hidden_size": 8, "epochs": 2}
FORM = {**{k: str(v) for k, v in TINY.items()}, "promote": "never"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(tmp_path_factory.mktemp("many-jobs") / "models")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(build_app(trainer_settings(model_dir, max_batch_series=3))) as c:
        yield c


def _dates(n: int, start: str) -> list[str]:
    return [str(d) for d in np.arange(np.datetime64(start), np.datetime64(start) + n)]


def _series(sid: str, n: int = 200, seed: int = 1, start: str = "2020-01-01", level: float = 100.0) -> dict:
    return {"id": sid, "closes": make_closes(n, level, seed).tolist(), "dates": _dates(n, start)}


def _manifest(model_dir: Path, final: dict[str, Any]) -> dict[str, Any]:
    assert final["status"] == "succeeded", final
    manifest: dict[str, Any] = json.loads(
        (model_dir / final["result"]["model"] / final["result"]["version"] / "manifest.json").read_text()
    )
    return manifest


def _post(client: TestClient, **kwargs: Any) -> Any:
    return client.post("/train", headers=AUTH, **kwargs)


def test_two_series_as_json_train_one_model_and_the_manifest_lists_both(
    client: TestClient, model_dir: Path
) -> None:
    body = {"series": [_series("aaa", seed=1), _series("bbb", seed=2, start="2020-02-01", level=40.0)],
            "params": TINY, "promote": "auto"}  # fmt: skip
    response = _post(client, json=body)
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    data = _manifest(model_dir, final)["data"]
    assert [s["name"] for s in data["series"]] == ["aaa", "bbb"]
    assert data["split"]["by"] == "time" and data["rows_used"] == 400
    assert final["series"] == 2
    gate = final["result"]["metrics"]["gate"]  # judged on both series' test closes, pooled
    assert gate is not None and gate["series"] == 2 and gate["n"] > 0, final


def test_two_uploaded_files_train_one_model(client: TestClient, model_dir: Path, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "alpha.csv", make_closes(200, seed=3))
    b = write_csv(tmp_path / "beta.csv", make_closes(200, 30.0, seed=4), start="2020-03-01")
    files = [("file", ("alpha.csv", a.read_bytes())), ("file", ("beta.csv", b.read_bytes()))]
    response = _post(client, data=FORM, files=files)
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    assert final["source"] == "2-series"
    assert [s["name"] for s in _manifest(model_dir, final)["data"]["series"]] == ["alpha", "beta"]


def test_a_long_format_upload_with_an_id_column_trains_each_id(
    client: TestClient, model_dir: Path, tmp_path: Path
) -> None:
    rows = [(sid, d, float(c)) for sid, seed in (("MSFT", 5), ("SPX", 6))
            for d, c in zip(_dates(200, "2021-01-01"), make_closes(200, seed=seed), strict=True)]  # fmt: skip
    long = write_long_csv(tmp_path / "prices.csv", rows)
    files = {"file": ("prices.csv", long.read_bytes())}
    response = _post(client, data={**FORM, "id_column": "symbol"}, files=files)
    assert response.status_code == 202, response.text
    final = wait_status(client, response.json()["job_id"], "succeeded", "failed")
    data = _manifest(model_dir, final)["data"]
    assert data["id_column"] == "symbol" and [s["name"] for s in data["series"]] == ["MSFT", "SPX"]
    assert final["source"] == "prices" and final["series"] == 2  # one file: its stem, as a single upload


def test_closes_beside_series_is_a_conflict(client: TestClient) -> None:
    body = {"closes": [1.0, 2.0], "series": [_series("a")], "params": TINY}
    response = _post(client, json=body)
    assert response.status_code == 422
    assert detail_msgs(response) == [
        "closes and series are both sent; send one series as closes (with dates, features) or several as "
        "series, not both"
    ]
    assert response.json()["detail"][0]["type"] == "series_conflict"


def test_neither_closes_nor_series_is_422(client: TestClient) -> None:
    response = _post(client, json={"params": TINY})
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith("neither closes nor series is sent")


@pytest.mark.parametrize(
    ("series", "loc", "words"),
    [
        ([_series("aaa"), {"id": "bbb", "closes": [1.0, -2.0]}], ["body", "series", 1, "closes"], "bbb: "),
        ([_series("aaa"), _series("aaa", seed=2)], ["body", "series", 1, "id"], "two series have id 'aaa'"),
        ([_series("aaa"), _series("bbb", n=11)], ["body", "series"], "bbb: only 11 usable closes"),
        (
            [_series("aaa"), {"id": "b", "closes": make_closes(200).tolist()}],
            ["body", "series"],
            "some series",
        ),
    ],
)
def test_a_bad_series_is_refused_naming_its_id(
    client: TestClient, series: list[dict], loc: list[Any], words: str
) -> None:
    response = _post(client, json={"series": series, "params": TINY})
    assert response.status_code == 422, response.text
    item = response.json()["detail"][0]
    assert item["loc"] == loc and item["msg"].startswith(words), item
    assert client.get("/train?limit=200", headers=AUTH).status_code == 200


def test_more_series_than_the_batch_limit_is_413(client: TestClient) -> None:
    body = {"series": [_series(f"s{i}", seed=i) for i in range(4)], "params": TINY}
    response = _post(client, json=body)
    assert response.status_code == 413
    assert "CLOSECAST_MAX_BATCH_SERIES" in response.text


def test_two_uploads_with_one_name_are_refused(client: TestClient, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", make_closes(200)).read_bytes()
    response = _post(client, data=FORM, files=[("file", ("a.csv", a)), ("file", ("a.csv", a))])
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith("two uploaded files are named 'a.csv'")


def test_an_upload_too_short_is_refused_with_its_file_name(client: TestClient, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", make_closes(200)).read_bytes()
    short = write_csv(tmp_path / "tiny.csv", make_closes(8)).read_bytes()
    response = _post(client, data=FORM, files=[("file", ("a.csv", a)), ("file", ("tiny.csv", short))])
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith("tiny: only 8 usable closes"), response.text


def test_more_files_than_the_batch_limit_is_413(client: TestClient, tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", make_closes(200)).read_bytes()
    files = [("file", (f"s{i}.csv", a)) for i in range(4)]
    response = _post(client, data=FORM, files=files)
    assert response.status_code == 413
    assert "CLOSECAST_MAX_BATCH_SERIES" in response.text
