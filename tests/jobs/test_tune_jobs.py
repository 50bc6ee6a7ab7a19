"""POST /train with `tune`: the search runs as the job (`python -m training tune`), its progress shows the
trials, the refitted best trial is judged and registered like any job; bad tune values are 422s."""

from __future__ import annotations

import json
import math
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.jobs.process import training_environment
from app.jobs.shards import study_progress
from app.jobs.supervisor import command_flags, study_environment, time_limit
from tests.helpers import copy_registry, detail_msgs
from tests.jobs.helpers import AUTH, build_app, job, trainer_settings
from tests.synthetic import make_closes, write_csv

TINY = {"window": 11, "hidden_size": 8, "epochs": 2}
TUNE = {"trials": 2, "folds": 2, "timeout_s": 300}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(tmp_path_factory.mktemp("tune-jobs") / "models")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(build_app(trainer_settings(model_dir, tune_timeout_s=3600))) as c:
        yield c


def _follow(client: TestClient, job_id: str, timeout: float = 240.0) -> tuple[dict[str, Any], list[dict]]:
    """The job once ended, and every progress seen while it ran."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = job(client, job_id)
        if now["status"] == "running":
            seen.append(now["progress"])
        if now["status"] in ("succeeded", "failed", "cancelled"):
            return now, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {now['status']} after {timeout} s")


def test_a_tune_job_writes_a_version_with_its_tuning_section(client: TestClient, model_dir: Path) -> None:
    body = {"closes": make_closes(300).tolist(), "params": TINY, "tune": TUNE, "promote": "auto"}
    response = client.post("/train", json=body, headers=AUTH)
    assert response.status_code == 202, response.text
    queued = job(client, response.json()["job_id"])
    assert queued["tune"] == {**TUNE, "trial_timeout_s": None, "workers": 1}
    final, seen = _follow(client, response.json()["job_id"])
    assert final["status"] == "succeeded", final
    assert final["result"]["metrics"]["gate"] is not None  # judged like any job
    manifest = json.loads(
        (model_dir / final["result"]["model"] / final["result"]["version"] / "manifest.json").read_text()
    )
    tuning = manifest["tuning"]
    assert tuning["n_trials"] == 2 and tuning["folds"] == 2
    assert tuning["best_params"]["window"] == 11 and tuning["best_params"]["hidden_size"] == 8
    assert tuning["storage"].startswith("sqlite:///")  # in the job's work dir, removed with it
    searched = [p for p in seen if p.get("trials_done")]
    assert searched, seen  # the CLI's own lines, relayed while the job ran
    assert searched[-1]["trials"] == 2
    entered = [p["phase"] for p in final["progress"]["phases"]]
    assert entered == ["queued", "loading", "search", "refit", "judging", "promoting"]
    assert final["progress"]["trials_done"] == 2
    assert final["progress"]["best_value"] == pytest.approx(tuning["best_value"])


def test_a_tune_upload_is_accepted_from_form_fields(client: TestClient, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(300))
    form = {
        "window": "11",
        "tune_trials": "2",
        "tune_timeout_s": "60",
        "tune_folds": "2",
        "tune_workers": "1",
    }
    response = client.post("/train", data=form, files={"file": ("p.csv", csv.read_bytes())}, headers=AUTH)
    assert response.status_code == 202, response.text
    accepted = job(client, response.json()["job_id"])
    assert accepted["tune"] == {
        "trials": 2,
        "timeout_s": 60.0,
        "trial_timeout_s": None,
        "folds": 2,
        "workers": 1,
    }
    assert accepted["progress"]["phase"] == "queued" and accepted["progress"]["trials_done"] == 0
    assert client.delete(f"/train/{accepted['job_id']}", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("tune", "words"),
    [
        ({"trials": 0}, "tune.trials is 0; input should be greater than or equal to 1"),
        ({"trials": 2, "timeout_s": -1}, "tune.timeout_s is -1; input should be greater than 0"),
        ({"trials": "2"}, 'tune.trials is "2"; input should be a valid integer'),
        ({"trials": 2, "budget": 9}, "tune.budget is not a known field"),
        ({"timeout_s": 3600}, "tune.timeout_s is 3600 but a tune job may run 3600 s in all"),
        ({"trials": 4, "workers": 0}, "tune.workers is 0; input should be greater than or equal to 1"),
        ({"trials": 40, "workers": 17}, "tune.workers is 17; input should be less than or equal to 16"),
        ({"trials": 4, "workers": 1.5}, "tune.workers is 1.5; input should be a valid integer"),
        ({"trials": 4, "workers": 2}, "tune.workers is 2 but this service uses the embedded job store"),
    ],
)
def test_bad_tune_values_are_422(client: TestClient, tune: dict[str, Any], words: str) -> None:
    body = {"closes": make_closes(300).tolist(), "params": TINY, "tune": tune}
    response = client.post("/train", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert detail_msgs(response)[0].startswith(words), response.text


def test_tune_on_several_series_is_422(client: TestClient) -> None:
    series = [{"id": name, "closes": make_closes(300, seed=i).tolist()} for i, name in enumerate("ab")]
    response = client.post("/train", json={"series": series, "params": TINY, "tune": TUNE}, headers=AUTH)
    assert response.status_code == 422
    assert detail_msgs(response)[0].startswith("a tune job searches on one series but 2 were sent")


def test_tune_with_features_is_422(client: TestClient) -> None:
    closes = make_closes(300).tolist()
    body = {"closes": closes, "features": {"volume": [1.0] * 300}, "params": {**TINY, "features": ["volume"]},
            "tune": TUNE}  # fmt: skip
    response = client.post("/train", json=body, headers=AUTH)
    assert response.status_code == 422
    assert "tune searches on the closes alone" in detail_msgs(response)[0]


def test_a_tune_jobs_limit_is_its_budget_plus_the_refit_capped(tmp_path: Path) -> None:
    settings = trainer_settings(tmp_path, train_timeout_s=600, tune_timeout_s=3600)
    assert time_limit({"params": {}}, settings) == (600, "CLOSECAST_TRAIN_TIMEOUT_S")
    assert time_limit({"tune": {"timeout_s": 100}}, settings)[0] == 700
    assert time_limit({"tune": {"timeout_s": 3500}}, settings) == (3600, "CLOSECAST_TUNE_TIMEOUT_S")
    assert time_limit({"tune": {"timeout_s": None}}, settings) == (3600, "CLOSECAST_TUNE_TIMEOUT_S")
    spec = {"csv": "p.csv", "column": "Close", "params": {"window": 11},
            "tune": {"trials": 3, "timeout_s": 50, "trial_timeout_s": None, "folds": 2}}  # fmt: skip
    command, flags = command_flags(spec, tmp_path, tmp_path / "v", settings)
    assert command == "tune" and flags["trials"] == 3 and flags["trial-timeout"] == 50
    assert flags["csv"] == [tmp_path / "p.csv"] and flags["window"] == 11


def test_tune_workers_on_the_embedded_backend_is_a_422_from_the_form(
    client: TestClient, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(300))
    form = {"window": "11", "tune_trials": "4", "tune_workers": "2"}
    response = client.post("/train", data=form, files={"file": ("p.csv", csv.read_bytes())}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert detail_msgs(response)[0].startswith(
        "tune.workers is 2 but this service uses the embedded job store"
    )
    assert "set CLOSECAST_DATABASE_URL" in detail_msgs(response)[0]


def test_a_shards_study_url_goes_in_its_environment_never_on_its_command_line(tmp_path: Path) -> None:
    url = "postgresql://closecast:s3cret@db:5432/closecast"
    settings = trainer_settings(tmp_path, database_url=url)
    tune = {"trials": 4, "timeout_s": None, "folds": 2, "workers": 2}
    spec = {"csv": "p.csv", "column": "Close", "params": {}, "study": "closecast-job-x", "shard": 1,
            "stage": "search", "tune": tune}  # fmt: skip
    command, flags = command_flags(spec, tmp_path, tmp_path / "v", settings)
    assert command == "tune" and "s3cret" not in repr(flags)
    assert [flags[k] for k in ("study", "budget", "shard", "stage")] == ["closecast-job-x", 4, 1, "search"]
    beats = (settings.job_heartbeat_s, settings.job_lease_s)  # a killed trial is given up with the job lease
    assert (flags["trial-heartbeat"], flags["trial-grace"]) == tuple(math.ceil(s) for s in beats)
    env = study_environment(spec, settings, tmp_path)
    assert env["CLOSECAST_TUNE_STORAGE"] == "postgresql://closecast_optuna@db:5432/closecast"
    assert env["PGOPTIONS"] == "-c search_path=closecast_optuna" and env["PGAPPNAME"].startswith(
        "closecast-train@"
    )
    assert "s3cret" not in repr(env)
    passfile = Path(env["PGPASSFILE"])
    assert passfile.parent == tmp_path and stat.S_IMODE(passfile.stat().st_mode) == 0o600
    role, password = passfile.read_text().strip().split(":")[3:]  # derived from the URL's, not the URL's
    assert role == "closecast_optuna" and len(password) == 64 and "s3cret" not in password
    assert study_environment({**spec, "study": None}, settings, tmp_path) == {}
    assert time_limit({**spec, "stage": "refit"}, settings)[1] == "CLOSECAST_TRAIN_TIMEOUT_S"


def test_a_parents_progress_shows_the_whole_study() -> None:
    own = {"phase": "search", "trials_done": 3, "trials_pruned": 1, "best_value": 0.99, "epoch": 0}
    shard = {"phase": "search", "trials_done": 4, "trials_pruned": 1, "best_value": 0.97}
    merged = study_progress(own, [shard, {"trials_done": 0, "best_value": None}])
    assert merged == {**own, "trials_done": 4, "trials_pruned": 1, "best_value": 0.97}


def test_the_training_childs_environment_holds_no_secret_of_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CLOSECAST_DATABASE_URL", "CLOSECAST_API_KEY", "CLOSECAST_OPTUNA_PASSWORD", "PGPASSWORD"):
        monkeypatch.setenv(name, "postgresql://closecast:s3cret@db/closecast")
    env = training_environment(1)
    assert "s3cret" not in repr(env) and "CLOSECAST_DATABASE_URL" not in env
