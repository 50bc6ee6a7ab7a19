"""A tune job with ``"workers": 2`` on PostgreSQL, with real processes on loopback: one API replica that only
enqueues, two ``python -m app.worker`` processes running the real training CLI, one shared models dir.

The job's shard runs on the other worker beside its parent, both search one Optuna study in the same
database (in Optuna's own schema, as Optuna's own role, its password in a 0600 passfile: never the service's
URL) until its budget, the parent refits the study's best trial and is judged; cancelling the parent
cancels its shard; SIGKILLing the worker that runs the shard loses the shard, not the job. Tiny on purpose
(300 closes, 2 epochs, 2 folds, 4 or 20 trials): what is under test is the split, the budget and the
ending, not the search."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ROOT,
    Server,
    copy_registry,
    detail_msgs,
    require_extra,
    running_server,
    server_env,
    wait_for,
)
from tests.jobs.helpers import AUTH, KEY
from tests.synthetic import make_closes

psycopg = require_extra("psycopg", "pg")
optuna = require_extra("optuna", "train")
from training.tune import FINISHED, rdb_storage  # noqa: E402  (after the skips: it imports optuna)

TINY = {"window": 11, "hidden_size": 8, "epochs": 2}
TRIALS, WORKERS = 4, 2
MAIN_PASSWORD = "main-s3cret"  # the test cluster trusts loopback: any password logs in; none may leak
SCHEMA = "closecast_optuna"
ENDED = ("succeeded", "failed", "cancelled")


@dataclass
class Fleet:
    api: Server
    workers: list[subprocess.Popen[bytes]]
    model_dir: Path
    url: str


@pytest.fixture(scope="module")
def fleet(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("tune-workers")
    model_dir = copy_registry(tmp / "models")
    pg_url = pg_url.replace("postgres@", f"postgres:{MAIN_PASSWORD}@", 1)
    common = {"database_url": pg_url, "api_key": KEY, "job_heartbeat_s": "0.5", "job_lease_s": "5"}
    env = server_env(model_dir=str(model_dir), providers="cpu", **common)
    with running_server(model_dir, run_jobs="false", tune_timeout_s="600", **common) as api:
        workers = [_start_worker(tmp / f"worker{n}.log", env) for n in (1, 2)]
        try:
            yield Fleet(api, workers, model_dir, pg_url)
        finally:
            for proc in workers:
                proc.terminate()
                proc.wait(30)


def _start_worker(log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "app.worker"], cwd=ROOT, env=env, stdout=fh, stderr=fh)
    wait_for(lambda: "claiming jobs" in log.read_text(), timeout=60, every=0.1)
    return proc


def _optuna_url(url: str) -> str:
    """The service's database with Optuna's schema first on the search path (where the studies are)."""
    return f"{url}?options=-csearch_path%3D{SCHEMA}"


def _submit(fleet: Fleet, tune: dict[str, Any]) -> httpx.Response:
    body = {"closes": make_closes(300).tolist(), "params": TINY, "tune": tune, "promote": "auto"}
    return httpx.post(fleet.api.url + "/train", json=body, headers=AUTH, timeout=30)


def _job(fleet: Fleet, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{fleet.api.url}/train/{job_id}", headers=AUTH, timeout=10).json()
    return body


def _rows(url: str, parent: str) -> list[dict[str, Any]]:
    """The parent's and its shards' rows, as the workers left them (who ran each: ``owner_pid``)."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, status, error, owner_pid, coalesce(spec->>'shard', '0') AS shard FROM jobs "
            "WHERE id = %s OR spec->>'shard_of' = %s ORDER BY shard",
            (parent, parent),
        ).fetchall()


def test_a_two_worker_tune_job_splits_into_shards_on_one_study_and_is_judged(fleet: Fleet) -> None:
    started = time.monotonic()
    response = _submit(fleet, {"trials": TRIALS, "folds": 2, "timeout_s": 300, "workers": WORKERS})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    final = wait_for(lambda: (j := _job(fleet, job_id))["status"] in ENDED and j, timeout=400, every=0.2)
    seconds = time.monotonic() - started
    assert final["status"] == "succeeded", final
    assert final["result"]["metrics"]["gate"] is not None  # judged like any job
    rows = _rows(fleet.url, job_id)
    assert [(r["shard"], r["status"]) for r in rows] == [("0", "succeeded"), ("1", "succeeded")], rows
    assert rows[0]["owner_pid"] != rows[1]["owner_pid"]  # the shard ran on the other worker, beside its job
    assert {r["owner_pid"] for r in rows} == {w.pid for w in fleet.workers}
    listed = httpx.get(fleet.api.url + "/train?limit=5", headers=AUTH, timeout=10).json()["jobs"]
    assert [j["shard_of"] for j in listed if j["job_id"] == rows[1]["id"]] == [job_id]

    with psycopg.connect(
        fleet.url
    ) as conn:  # Optuna's tables: in its schema, owned by its role, none in public
        tables = conn.execute(
            "SELECT schemaname, tableowner FROM pg_tables WHERE tablename IN ('studies', 'trials')"
        ).fetchall()
    assert sorted(tables) == [(SCHEMA, SCHEMA), (SCHEMA, SCHEMA)], tables
    storage = rdb_storage(_optuna_url(fleet.url))
    assert not isinstance(storage, str)
    try:
        assert optuna.study.get_all_study_names(storage).count(f"closecast-job-{job_id}") == 1  # created once
        study = optuna.load_study(study_name=f"closecast-job-{job_id}", storage=storage)
        finished = study.get_trials(deepcopy=False, states=FINISHED)
    finally:
        storage.engine.dispose()
    assert TRIALS <= len(finished) <= TRIALS + WORKERS - 1  # MaxTrialsCallback: overshoot up to K-1
    by_shard = sorted(t.user_attrs["shard"] for t in finished)
    print(f"2-worker tune job: {seconds:.1f} s, trials by shard {by_shard}")  # docs/performance.md (-s)
    manifest_path = fleet.model_dir / "default" / final["result"]["version"] / "manifest.json"
    tuning = json.loads(manifest_path.read_text())["tuning"]
    assert tuning["study"] == f"closecast-job-{job_id}" and tuning["n_trials"] == len(finished)
    assert tuning["storage"].startswith(
        f"postgresql://{SCHEMA}@"
    )  # the child's URL: Optuna's role, no password
    assert final["progress"]["trials_done"] == len(finished) and "refit" in [
        p["phase"] for p in final["progress"]["phases"]
    ]


def test_cancelling_a_distributed_tune_job_cancels_its_shard(fleet: Fleet) -> None:
    response = _submit(fleet, {"trials": 200, "folds": 2, "workers": WORKERS})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    wait_for(lambda: [r["status"] for r in _rows(fleet.url, job_id)] == ["running"] * 2, timeout=60)
    assert httpx.delete(f"{fleet.api.url}/train/{job_id}", headers=AUTH, timeout=10).status_code == 200
    rows = wait_for(lambda: _all_ended(_rows(fleet.url, job_id)), timeout=60)
    assert [r["status"] for r in rows] == ["cancelled", "cancelled"], rows
    assert rows[1]["error"] == f"cancelled: its parent job {job_id} ended (cancelled)", rows


def _all_ended(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return rows if rows and all(r["status"] in ENDED for r in rows) else None


@pytest.mark.parametrize(
    ("tune", "words"),
    [
        ({"trials": 2, "workers": 3}, "tune.workers is 3 but tune.trials is 2; ask for at most one a trial"),
        ({"trials": 40, "workers": 17}, "tune.workers is 17; input should be less than or equal to 16"),
    ],
)
def test_bad_workers_on_postgres_are_422(fleet: Fleet, tune: dict[str, Any], words: str) -> None:
    response = _submit(fleet, tune)
    assert response.status_code == 422, response.text
    assert detail_msgs(response)[0].startswith(words)


def _shard_trial(url: str, study: str) -> int | None:
    """The number of the trial shard 1 is running now (its process is mid-search), if any."""
    with (
        psycopg.connect(_optuna_url(url)) as conn,
        suppress(psycopg.errors.UndefinedTable),
    ):  # before Optuna's tables
        row = conn.execute(
            "SELECT t.number FROM trials t JOIN studies s USING (study_id) JOIN trial_user_attributes a "
            "USING (trial_id) WHERE s.study_name = %s AND t.state = 'RUNNING' AND a.key = 'shard' "
            "AND a.value_json = '1'",
            (study,),
        ).fetchone()
        return None if row is None else int(row[0])
    return None


def _assert_no_secret_reaches(pid: int, model_dir: Path) -> None:
    """A shard's training process: neither the service's password nor Optuna's role's in its environment or
    command line; that role's password only in a 0600 passfile in the job's work dir."""
    environ = dict(
        line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in line
    )
    cmdline = Path(f"/proc/{pid}/cmdline").read_text()
    passfile = Path(environ["PGPASSFILE"])
    assert passfile.is_relative_to(model_dir / ".jobs") and (passfile.stat().st_mode & 0o777) == 0o600
    password = passfile.read_text().strip().rsplit(":", 1)[1]
    for secret in (MAIN_PASSWORD, password):
        assert secret not in repr(environ) and secret not in cmdline
    assert "CLOSECAST_DATABASE_URL" not in environ and environ["PGAPPNAME"].startswith("closecast-train@")


def _train_connections(url: str) -> int:
    """Connections training processes hold now (``closecast-train@host``): docs/scale-out.md's count."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'closecast-train@%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _served(fleet: Fleet) -> str:
    listed = httpx.get(fleet.api.url + "/models", timeout=10).json()["models"]
    (current,) = [m["current_version"] for m in listed if m["model"] == "default"]
    return str(current)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def _follow(
    fleet: Fleet, job_id: str, served: str, trainer: int, kill_at: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """The job once ended, and how long after the kill its shard's row was failed ("row") and its training
    process gone ("process"); the served model must stay as it was until then (a job changes it only at its
    gate, its last step)."""
    after: dict[str, float] = {}
    while (job := _job(fleet, job_id))["status"] not in ENDED:
        if _served(fleet) != served:  # only at the gate: promoting, or ended since `job` was read
            now = _job(fleet, job_id)
            assert now["status"] in ENDED or now["progress"]["phase"] == "promoting", "changed before gate"
        after["train_connections"] = max(after.get("train_connections", 0), _train_connections(fleet.url))
        if "row" not in after and _rows(fleet.url, job_id)[1]["status"] == "failed":
            after["row"] = time.time() - kill_at
        if "process" not in after and _gone(trainer):
            after["process"] = time.time() - kill_at
        assert time.time() - kill_at < 180, f"job {job_id} is still {job['status']} 180 s after the kill"
        time.sleep(0.1)
    return job, after


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = rdb_storage(_optuna_url(url))
    assert not isinstance(storage, str)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


def test_a_worker_killed_mid_search_loses_its_shard_and_the_job_goes_on(fleet: Fleet) -> None:
    """Runs last: it kills one of the module's workers (the one running the shard, mid-trial)."""
    served, trials = _served(fleet), 20  # ~0.5 s each here: the parent's search outlasts the trial grace
    response = _submit(fleet, {"trials": trials, "folds": 2, "timeout_s": 300, "workers": WORKERS})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    wait_for(lambda: _shard_trial(fleet.url, f"closecast-job-{job_id}") is not None, timeout=120, every=0.1)
    shard = _rows(fleet.url, job_id)[1]
    (holder,) = [w for w in fleet.workers if w.pid == shard["owner_pid"]]
    with psycopg.connect(fleet.url) as conn:
        trainer = conn.execute("SELECT child_pid FROM jobs WHERE id = %s", (shard["id"],)).fetchone()
    assert trainer is not None
    _assert_no_secret_reaches(trainer[0], fleet.model_dir)
    holder.kill()
    holder.wait(10)
    kill_at = time.time()
    job, after = _follow(fleet, job_id, served, trainer[0], kill_at)
    ended_after = time.time() - kill_at

    assert job["status"] == "succeeded", job  # the job goes on with the trials the study has
    rows = _rows(fleet.url, job_id)
    assert [r["status"] for r in rows] == ["succeeded", "failed"], rows
    assert rows[1]["owner_pid"] == holder.pid  # failed, never claimed again
    assert rows[1]["error"].startswith(f"interrupted by restart: the worker process {holder.pid} "), rows[1]
    assert after.get("row", 99) < 10  # by the parent's worker at once, not at the job's end
    assert after.get("process", 99) < 5  # the orphan stops itself (--parent-pid) or is killed by recovery
    every = _trials(fleet.url, f"closecast-job-{job_id}")
    seen = [(t.number, t.state.name, t.user_attrs.get("shard"), t.system_attrs) for t in every]  # on failure
    finished = [t for t in every if t.state in FINISHED]
    assert trials <= len(finished) <= trials + WORKERS - 1, seen  # the budget, without the lost shard
    assert job["progress"]["trials_done"] == len(finished), (job["progress"], seen)
    lost = [t for t in every if t.user_attrs.get("shard") == 1 and t.state not in FINISHED]
    lost = [t for t in lost if "failed_trial" not in t.system_attrs]  # not a retry (it copies user attrs)
    assert len(lost) <= 1, seen  # the trial its process was running when it ended, if any
    for trial in lost:
        retried = [t for t in every if t.system_attrs.get("failed_trial") == trial.number]
        if trial.state == optuna.trial.TrialState.RUNNING:  # the budget was reached before its grace
            assert not retried, seen
        else:  # failed by its stale heartbeat (grace: CLOSECAST_JOB_LEASE_S) and run again once, after it
            assert trial.state == optuna.trial.TrialState.FAIL and len(retried) == 1, (trial.number, seen)
            assert retried[0].state in FINISHED and retried[0].datetime_start >= trial.datetime_complete, seen
    states = [t.state.name for t in lost]
    assert 1 <= after["train_connections"] <= 3 * WORKERS  # up to 3 per training process
    print(
        f"training connections at most {after['train_connections']:.0f}; "
        f"after the kill: shard failed {after['row']:.1f} s, process gone {after['process']:.1f} s, "
        f"job ended {ended_after:.1f} s; its trial {states}"
    )
    result = job["result"]
    assert _served(fleet) == (result["version"] if result["promoted"] else served)
