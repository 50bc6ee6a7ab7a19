"""Keys, validation and the registry endpoints (no training runs to the end here)."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.errors import status_of
from app.jobs.errors import storage_failed
from app.storage.errors import StoreFull
from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, KEY, build_app, trainer_settings
from tests.synthetic import random_walk

CLOSES = random_walk(300, seed=3).tolist()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(tmp_path_factory.mktemp("api") / "models")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(build_app(trainer_settings(model_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    model_dir = copy_registry(tmp_path_factory.mktemp("keyless") / "models")
    with TestClient(build_app(trainer_settings(model_dir, api_key=None))) as c:
        yield c


def msgs(response: Any) -> list[str]:
    return [d["msg"] for d in response.json()["detail"]]


PROTECTED = [
    ("POST", "/train"),
    ("GET", "/train"),
    ("GET", "/train/abc"),
    ("DELETE", "/train/abc"),
    ("POST", f"/models/{FIXTURE_VERSION}/promote"),
]


# --- keys -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_without_a_configured_key_training_is_off_and_says_how_to_enable_it(
    keyless: TestClient, method: str, path: str
) -> None:
    response = keyless.request(method, path, headers=AUTH, json={"closes": CLOSES})
    assert response.status_code == 403
    assert "set CLOSECAST_API_KEY" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": KEY},
    ],
    ids=["missing", "wrong", "not-bearer", "x-api-key"],
)
def test_a_missing_or_wrong_key_is_401(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = client.request(method, path, headers=headers, json={"closes": CLOSES})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <key>" in response.json()["detail"]


def test_listing_models_needs_no_key(keyless: TestClient) -> None:
    body = keyless.get("/models").json()
    assert [(m["model"], m["current_version"], m["loaded"]) for m in body["models"]] == [
        ("default", FIXTURE_VERSION, True)
    ]
    versions = keyless.get("/models/default/versions").json()
    assert versions["current"] == versions["served"] == FIXTURE_VERSION


# --- validation: the training CLI's own messages ----------------------------------------------------------


def post(client: TestClient, **body: Any) -> Any:
    return client.post("/train", json={"closes": CLOSES, **body}, headers=AUTH)


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"closes": [*CLOSES[:5], -1, *CLOSES[6:]]}, ["body", "closes"],
         "closes[5] is '-1.0'; prices must be > 0"),
        ({"closes": CLOSES[:20], "params": {"window": 11}}, ["body", "closes"],
         "only 20 usable closes; window 11 with a 70%/10%/20% split needs at least 50"),
        ({"dates": ["2020-01-01", "2020-01-02"]}, ["body", "dates"],
         "dates has 2 values but closes has 300; send one date per close"),
        ({"params": {"window": 2}}, ["body", "params"],
         "window is 2; it must be in [3, 1000] closes"),
        ({"params": {"hidden_size": 2000}}, ["body", "params"],
         "hidden_size is 2000; it must be in [1, 1024]"),
        ({"closes": [100.0] * 300}, ["body", "closes"],
         "the training returns have standard deviation 0.0; a constant series cannot be scaled"),
    ],
)  # fmt: skip
def test_bad_data_and_params_get_the_cli_messages(
    client: TestClient, body: dict[str, Any], loc: list[str], message: str
) -> None:
    response = post(client, **body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert msgs(response) == [message]


def test_json_dates_out_of_order_are_refused(client: TestClient) -> None:
    dates = [f"2020-{m:02d}-{d:02d}" for m in range(1, 12) for d in range(1, 29)][: len(CLOSES)]
    response = post(client, dates=[*dates[:3], dates[4], dates[3], *dates[5:]])
    assert response.status_code == 422
    # JSON values are named by their index, as in the CLI's messages for a CSV line
    expected = "dates[4] is 2020-01-04, earlier than dates[3] (2020-01-05); sort the rows by date"
    assert msgs(response) == [expected]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"params": {"weight_decay": 0.1}}, "params.weight_decay is not a known field; remove it"),
        ({"promote": "sometimes"}, "promote is \"sometimes\"; input should be 'auto', 'always' or 'never'"),
        ({"name": "../etc"}, 'name is "../etc"; string should match pattern'),
        ({"closes": "many"}, 'closes is "many"; input should be a valid list'),
    ],
)
def test_schema_errors_name_the_field(client: TestClient, body: dict[str, Any], message: str) -> None:
    response = post(client, **body)
    assert response.status_code == 422
    assert msgs(response)[0].startswith(message)


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post("/train", content=b"{", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert msgs(response)[0].startswith("body is not valid JSON")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"closes": [1.0], "name": "\xff"}', "byte 0xff is not valid UTF-8 at character 27"),
        (b"[" * 100_000, "arrays or objects nested too deeply at character 0"),
    ],
    ids=["not-utf8", "nested-too-deep"],
)  # fmt: skip
def test_a_body_json_cannot_decode_is_422_not_500(client: TestClient, content: bytes, message: str) -> None:
    response = client.post("/train", content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert msgs(response) == [f"body is not valid JSON ({message}); send a JSON object"]


def _csv(rows: list[str]) -> str:
    return "Date,Close\n" + "\n".join(rows) + "\n"


GOOD_ROWS = [f"2020-{1 + i // 28:02d}-{1 + i % 28:02d},{c:.4f}" for i, c in enumerate(CLOSES[:280])]
BAD_CSVS = {
    "bad-price": (_csv([*GOOD_ROWS[:3], "2020-01-04,abc", *GOOD_ROWS[4:]]), {}),
    "few-rows": (_csv(GOOD_ROWS[:30]), {}),
    "duplicate-date": (_csv([*GOOD_ROWS[:5], GOOD_ROWS[2], *GOOD_ROWS[6:]]), {}),
    "unsorted": (_csv([*GOOD_ROWS[:5], GOOD_ROWS[6], GOOD_ROWS[5], *GOOD_ROWS[7:]]), {}),
    "no-column": (_csv(GOOD_ROWS), {"column": "Adj Close"}),
    "no-date-column": (_csv(GOOD_ROWS), {"date_column": "Day"}),
    "constant": (_csv([f"{row.split(',')[0]},100.0" for row in GOOD_ROWS]), {}),
}


@pytest.mark.parametrize("case", BAD_CSVS)
def test_upload_errors_are_the_cli_errors_word_for_word(
    client: TestClient, tmp_path: Path, case: str
) -> None:
    text, form = BAD_CSVS[case]
    path = tmp_path / "prices.csv"
    path.write_text(text)
    flags = [a for k, v in form.items() for a in (f"--{k.replace('_', '-')}", v)]
    cli = subprocess.run(
        [sys.executable, "-m", "training", "train", "--csv", str(path), "--out", str(tmp_path / "out"),
         *flags, "--window", "11"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 2, cli.stderr
    response = client.post(
        "/train", files={"file": ("prices.csv", text)}, data={**form, "window": "11"}, headers=AUTH
    )
    assert response.status_code == 422
    assert cli.stderr.strip() == f"python -m training train: error: {msgs(response)[0]}"


def test_upload_with_a_cell_over_the_csv_field_limit_is_422(client: TestClient) -> None:
    huge = "9" * 200_000  # over csv's field_size_limit (131072): the reader raises csv.Error
    text = _csv([*GOOD_ROWS[:5], f"2020-01-06,{huge}", *GOOD_ROWS[6:]])
    response = client.post(
        "/train", files={"file": ("prices.csv", text)}, data={"window": "11"}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    assert "line 7" in msgs(response)[0]


def test_upload_without_a_file_is_422(client: TestClient) -> None:
    response = client.post("/train", data={"window": "11"}, files={"other": ("x", "y")}, headers=AUTH)
    assert response.status_code == 422
    assert msgs(response) == [
        "file is required; upload the CSV as `-F file=@prices.csv` (repeat -F file=@... for several series)"
    ]


def test_upload_with_an_unknown_field_is_422(client: TestClient) -> None:
    response = client.post(
        "/train", files={"file": ("p.csv", _csv(GOOD_ROWS))}, data={"windw": "11"}, headers=AUTH
    )
    assert response.status_code == 422
    assert msgs(response) == ["windw is not a known field; remove it (see /docs for the schema)"]


def test_upload_is_accepted_named_after_the_file_and_cancellable(client: TestClient) -> None:
    response = client.post(
        "/train",
        files={"file": ("my prices (2).csv", _csv(GOOD_ROWS).replace("Close", "Last"))},
        data={"column": "Last", "window": "11", "epochs": "2", "promote": "never"},
        headers=AUTH,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = client.get(response.headers["location"], headers=AUTH).json()
    assert job["source"] == "my_prices__2_" and job["promote"] == "never"
    assert job["model"] == "default"
    assert job["params"] == {"window": 11, "epochs": 2}
    progress = job["progress"]
    assert progress == {"epoch": 0, "epochs": 2, "train_loss": None, "val_loss": None} | {
        "phase": "queued",
        "phases": [{"phase": "queued", "at": progress["phases"][0]["at"]}],
    }
    assert job["created_at"] >= progress["phases"][0]["at"]
    cancelled = client.delete(f"/train/{job_id}", headers=AUTH).json()
    assert cancelled["status"] == "cancelled"


def test_unknown_jobs_are_404(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/train/nope", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["detail"] == "no job 'nope'; GET /train lists the recent jobs"


def test_openapi_documents_both_bodies_of_post_train(client: TestClient) -> None:
    body = client.get("/openapi.json").json()["paths"]["/train"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["properties"]["params"]["properties"]["window"]
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]


# --- registry --------------------------------------------------------------------------------------------


def test_promoting_an_unknown_version_is_404(client: TestClient) -> None:
    response = client.post("/models/20990101T000000Z-00000000/promote", headers=AUTH)
    assert response.status_code == 404
    assert "GET /models/default/versions lists them" in response.json()["detail"]


def test_promoting_an_invalid_name_is_422(client: TestClient) -> None:
    response = client.post("/models/.hidden/promote", headers=AUTH)
    assert response.status_code == 422
    assert msgs(response)[0].startswith("version is '.hidden'; a version is a directory name")


def test_promoting_a_damaged_version_is_409_and_changes_nothing(client: TestClient, model_dir: Path) -> None:
    damaged = model_dir / DEFAULT / "20990101T000000Z-damaged0"
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, damaged)
    (damaged / "scaler.json").write_text("{}")
    try:
        response = client.post(f"/models/{damaged.name}/promote", headers=AUTH)
        assert response.status_code == 409
        assert "scaler.json is damaged" in response.json()["detail"]
        assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
        assert client.get("/models/current").json()["version"] == FIXTURE_VERSION
    finally:
        shutil.rmtree(damaged)


def test_a_version_removed_while_it_is_promoted_is_404_and_changes_nothing(
    client: TestClient, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vanishing = model_dir / DEFAULT / "20990101T000000Z-vanish00"
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, vanishing)
    set_current = registry.set_current

    def removed_first(directory: Path, version: str, reason: str = "") -> None:
        shutil.rmtree(vanishing)  # after the route's check and the verified load, before the pointer moves
        set_current(directory, version, reason)

    monkeypatch.setattr(registry, "set_current", removed_first)
    response = client.post(f"/models/{vanishing.name}/promote", headers=AUTH)
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == (
        f"version {vanishing.name!r} is not a version of model 'default'; "
        "GET /models/default/versions lists them"
    )
    assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
    assert client.get("/models/current").json()["version"] == FIXTURE_VERSION


@pytest.mark.parametrize(
    ("error", "status", "what_to_do"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507, "free some space"),
        (OSError(errno.EROFS, "Read-only file system"), 503, "make it writable by the service"),
    ],
    ids=["full", "read-only"],
)
def test_a_pointer_that_cannot_be_written_is_503_or_507_and_changes_nothing(
    client: TestClient,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    status: int,
    what_to_do: str,
) -> None:
    other = model_dir / DEFAULT / "20990101T000000Z-nowrite0"
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, other)

    def cannot_write(directory: Path, version: str, reason: str = "") -> None:
        raise error

    monkeypatch.setattr(registry, "set_current", cannot_write)
    try:
        response = client.post(f"/models/{other.name}/promote", headers=AUTH)
        assert response.status_code == status, response.text
        assert (
            response.json()["detail"]
            == f"cannot make {other.name} current in the model dir (CLOSECAST_MODEL_DIR): {error.strerror}; "
            f"{what_to_do}"
        )
        assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
        assert client.get("/models/current").json()["version"] == FIXTURE_VERSION
    finally:
        shutil.rmtree(other)


def test_a_version_with_an_unreadable_manifest_is_listed_with_the_problem(
    client: TestClient, model_dir: Path
) -> None:
    broken = model_dir / DEFAULT / "20990101T000000Z-broken00"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    try:
        listed = client.get("/models/default/versions", headers=AUTH).json()["versions"][0]
        assert listed["version"] == broken.name and listed["current"] is False
        assert listed["problem"].startswith(f"{broken.name}/manifest.json is not readable JSON")
    finally:
        shutil.rmtree(broken)


# --- storage -----------------------------------------------------------------------------------------------


def test_a_model_dir_that_cannot_take_the_job_is_503_and_queues_nothing(tmp_path: Path) -> None:
    model_dir = copy_registry(tmp_path / "models")
    (model_dir / ".jobs").write_text("not a directory")  # as root, chmod cannot make a dir unwritable
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        response = post(client)
        assert response.status_code == 503
        assert response.json()["detail"].startswith(
            "cannot store the job in the model dir (CLOSECAST_MODEL_DIR): Not a directory"
        )
        assert response.json()["detail"].endswith("; make it writable by the service")
        assert client.get("/train", headers=AUTH).json() == {"jobs": []}


def _sqlite_error(message: str, code: int) -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # what sqlite3 sets on the errors it raises
    return exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507),
        (StoreFull("jobs.sqlite", "database or disk is full"), 507),  # the embedded store's full disk
        (_sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR), 503),
        (PermissionError(errno.EACCES, "Permission denied"), 503),
    ],
)
def test_storage_errors_map_to_503_or_507(exc: Exception, status: int) -> None:
    assert status_of(storage_failed(Path("/models"), exc)) == status


def test_a_service_that_never_trains_never_writes_to_the_model_dir(tmp_path: Path) -> None:
    model_dir = copy_registry(tmp_path / "models")
    before = sorted(p.name for p in model_dir.iterdir())
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        assert client.get("/train", headers=AUTH).json() == {"jobs": []}
        assert client.get("/train/abc", headers=AUTH).status_code == 404
        assert client.get("/models").status_code == 200
    assert sorted(p.name for p in model_dir.iterdir()) == before


def test_an_installation_without_torch_answers_503_and_says_why(tmp_path: Path) -> None:
    """The serve-only image has no torch: /train must say so instead of queueing a job that cannot run."""
    app = build_app(trainer_settings(copy_registry(tmp_path / "models")))
    app.state.jobs.training_modules = ("torch", "closecast_module_that_is_not_installed")
    with TestClient(app) as client:
        response = client.post("/train", headers=AUTH, json={"closes": random_walk(200).tolist()})
        assert response.status_code == 503
        message = response.json()["detail"]
        assert "cannot train: closecast_module_that_is_not_installed not installed" in str(message)
        assert client.post("/forecast", json={"closes": [100.0 + i for i in range(30)]}).status_code == 200
