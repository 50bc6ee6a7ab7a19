"""One real retrain job through the HTTP API, with /forecast traffic running all along.

The served model is the fixture, which learned the weekly rhythm of ``tests/synthetic.py`` series. The job
trains on a plain random walk, where that rhythm is noise, so the candidate is honestly better on its own
test part and ``promote=auto`` promotes it; the tests read the MAEs the gate reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, build_app, job, submit, trainer_settings, wait_for
from tests.synthetic import random_walk

SERIES = random_walk(300, seed=1)


@dataclass
class Run:
    client: TestClient
    model_dir: Path
    job_id: str
    timeline: list[tuple[str, int]] = field(default_factory=list)  # (status, epoch) as polled
    phases_seen: list[str] = field(default_factory=list)  # progress.phase as polled
    final: dict[str, Any] = field(default_factory=dict)
    # per traffic thread, in the order that thread sent them: (HTTP status, model_version)
    forecasts: list[list[tuple[int, str | None]]] = field(default_factory=list)


def _forecast_until(client: TestClient, stop: threading.Event, out: list[tuple[int, str | None]]) -> None:
    body = {"closes": SERIES[-30:].tolist(), "horizon": 3}
    while not stop.is_set():
        response = client.post("/forecast", json=body)
        out.append((response.status_code, response.json().get("model_version")))
        time.sleep(0.01)  # steady traffic that leaves the (niced) training process some CPU on 2 cores


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    model_dir = copy_registry(tmp_path_factory.mktemp("lifecycle") / "models")
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        stop = threading.Event()
        forecasts: list[list[tuple[int, str | None]]] = [[], []]  # one list per thread: no cross-thread order
        threads = [threading.Thread(target=_forecast_until, args=(client, stop, out)) for out in forecasts]
        for t in threads:
            t.start()
        try:
            result = Run(client, model_dir, submit(client, SERIES, promote="auto"))
            while (current := job(client, result.job_id))["status"] in ("queued", "running"):
                result.timeline.append((current["status"], current["progress"]["epoch"]))
                result.phases_seen.append(current["progress"]["phase"])
                time.sleep(0.05)
            result.final = current
            # Requests sent after the job ended (so after its swap) by every thread: generous for a busy box.
            counts = [len(out) for out in forecasts]
            wait_for(
                lambda: all(len(out) > n + 10 for out, n in zip(forecasts, counts, strict=True)), timeout=60
            )
        finally:
            stop.set()
            for t in threads:
                t.join()
        result.forecasts = forecasts
        yield result


def test_job_runs_queued_then_running_then_succeeded_with_progress(run: Run) -> None:
    statuses = [s for s, _ in run.timeline]
    assert statuses[0] in ("queued", "running") and "running" in statuses
    assert statuses == sorted(statuses, key=("queued", "running").index)  # never back to queued
    assert run.final["status"] == "succeeded", run.final
    progress = run.final["progress"]
    assert progress["epoch"] == progress["epochs"] == 3
    assert progress["train_loss"] > 0 and progress["val_loss"] > 0
    epochs_seen = [e for s, e in run.timeline if s == "running"]
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] == 3  # the export runs after the last epoch
    assert run.final["created_at"] <= run.final["started_at"] <= run.final["finished_at"]


PLAIN_PHASES = ["queued", "loading", "training", "calibrating", "exporting", "judging", "promoting"]


def test_job_goes_through_every_phase_in_order_with_times(run: Run) -> None:
    phases = run.final["progress"]["phases"]
    assert [p["phase"] for p in phases] == PLAIN_PHASES
    times = [p["at"] for p in phases]
    assert times == sorted(times)
    assert times[0] <= run.final["created_at"] <= run.final["started_at"] <= times[1]
    assert times[-1] <= run.final["finished_at"] and run.final["progress"]["phase"] == "promoting"
    polled = [phase for i, phase in enumerate(run.phases_seen) if i == 0 or phase != run.phases_seen[i - 1]]
    assert polled == [p for p in PLAIN_PHASES if p in polled]  # as polled: never back, never out of order
    assert len(polled) >= 3, polled


def test_the_new_version_and_its_promotion_name_the_job(run: Run) -> None:
    version = run.final["result"]["version"]
    listed = run.client.get("/models/default/versions").json()["versions"]
    made = next(v for v in listed if v["version"] == version)["training"]
    assert made["job_id"] == run.job_id and made["settings"]["epochs"] == 3 and made["epochs_run"] == 3
    last = run.client.get("/models/default/history").json()["promotions"][0]
    assert (last["from"], last["to"], last["by"]) == (FIXTURE_VERSION, version, "job")
    assert last["job_id"] == run.job_id


def test_better_candidate_is_promoted_and_reports_both_maes(run: Run) -> None:
    result = run.final["result"]
    gate = result["metrics"]["gate"]
    assert gate["current_version"] == FIXTURE_VERSION
    assert gate["candidate_mae"] < gate["current_mae"]  # the fixture's rhythm misleads it on a random walk
    assert result["promoted"] is True
    for mae in (gate["candidate_mae"], gate["current_mae"], gate["naive_mae"]):
        assert f"{mae:.6g}" in result["reason"]
    assert gate["n"] == result["metrics"]["test"]["n"] == 60  # the candidate's whole test part (20% of 300)
    assert gate["candidate_mae"] == pytest.approx(result["metrics"]["test"]["model"]["mae"], rel=1e-6)
    assert registry.read_current(run.model_dir / DEFAULT) == result["version"]


def test_forecasts_never_fail_during_training_and_promotion(run: Run) -> None:
    every = [answer for thread in run.forecasts for answer in thread]
    assert len(every) > 100
    assert {status for status, _ in every} == {200}
    new = run.final["result"]["version"]
    assert {v for _, v in every} == {FIXTURE_VERSION, new}
    for thread in run.forecasts:
        # One thread's requests are sequential: each one starts after the previous one answered. So the
        # version it was served can only move forward, from the fixture (before the job) to the new one
        # (the last requests were sent after the job, and so the swap, had finished): one clean swap.
        versions = [v for _, v in thread]
        assert versions[0] == FIXTURE_VERSION and versions[-1] == new
        switch = versions.index(new)
        assert set(versions[:switch]) == {FIXTURE_VERSION} and set(versions[switch:]) == {new}


def test_new_version_is_registered_whole_and_the_work_dir_is_gone(run: Run) -> None:
    version = run.final["result"]["version"]
    assert registry.list_versions(run.model_dir / DEFAULT) == sorted([FIXTURE_VERSION, version])
    names = {p.name for p in (run.model_dir / DEFAULT / version).iterdir()}
    assert names == {"manifest.json", "model.onnx", "model.pt", "scaler.json", "report.png"}
    assert list((run.model_dir / ".jobs").iterdir()) == []
    assert not [p for p in run.model_dir.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_models_lists_versions_newest_first_and_marks_current(run: Run) -> None:
    body = run.client.get("/models/default/versions", headers=AUTH).json()
    version = run.final["result"]["version"]
    assert body["current"] == body["served"] == version
    assert [v["version"] for v in body["versions"]] == [version, FIXTURE_VERSION]
    assert [v["current"] for v in body["versions"]] == [True, False]
    assert body["versions"][0]["metrics"]["test"]["n"] == 60
    assert body["versions"][0]["data"]["source"] == "request.csv"


def test_jobs_are_listed_newest_first(run: Run) -> None:
    jobs = run.client.get("/train", headers=AUTH).json()["jobs"]
    assert jobs[0]["job_id"] == run.job_id and jobs[0]["status"] == "succeeded"


def test_promote_rolls_back_and_every_worker_follows(run: Run) -> None:
    new = run.final["result"]["version"]
    with TestClient(build_app(trainer_settings(run.model_dir))) as other_worker:
        assert other_worker.get("/models/current").json()["version"] == new
        response = run.client.post(f"/models/{FIXTURE_VERSION}/promote", headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json() == {"model": "default", "version": FIXTURE_VERSION, "previous": new}
        assert run.client.get("/models/current").json()["version"] == FIXTURE_VERSION  # this worker: at once
        assert registry.read_current(run.model_dir / DEFAULT) == FIXTURE_VERSION
        wait_for(lambda: other_worker.get("/models/current").json()["version"] == FIXTURE_VERSION, timeout=30)
        assert run.client.post(f"/models/{new}/promote", headers=AUTH).json()["version"] == new  # and forward


def test_a_new_app_on_the_same_dir_serves_the_pointer_and_keeps_the_jobs(run: Run) -> None:
    with TestClient(build_app(trainer_settings(run.model_dir))) as restarted:
        assert restarted.get("/models/current").json()["version"] == registry.read_current(
            run.model_dir / DEFAULT
        )
        assert job(restarted, run.job_id)["status"] == "succeeded"
