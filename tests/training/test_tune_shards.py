"""Distributed tuning: two shard processes on one Optuna study in PostgreSQL share one trial budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna

from tests.helpers import ROOT
from tests.synthetic import make_closes, write_csv
from training.tune import FINISHED, rdb_storage

BUDGET = 5
SHARDS = 2
TUNE = [sys.executable, "-m", "training", "tune"]


def test_two_shards_on_one_study_reach_the_budget_once(pg_url: str, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(260))
    common = ["--csv", str(csv), "--storage", pg_url, "--study", "shared", "--budget", str(BUDGET)]
    tiny = ["--window", "11", "--epochs", "2", "--hidden-size", "4", "--folds", "2", "--quiet"]
    shards = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training",
                "tune",
                *common,
                *tiny,
                "--shard",
                str(n),
                "--out",
                str(tmp_path / f"s{n}"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(SHARDS)
    ]
    for proc in shards:
        err = proc.communicate(timeout=600)[1]
        assert proc.returncode == 0, err
    storage = rdb_storage(pg_url)
    assert not isinstance(storage, str)
    try:
        _check_study(storage, common, tiny, tmp_path)
    finally:
        storage.engine.dispose()  # no pooled connection left open at exit


def _check_study(
    storage: optuna.storages.RDBStorage, common: list[str], tiny: list[str], tmp_path: Path
) -> None:
    study = optuna.load_study(study_name="shared", storage=storage)  # created once, by one shard
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    assert BUDGET <= len(finished) <= BUDGET + SHARDS - 1  # MaxTrialsCallback: overshoot up to K-1
    assert len(study.trials) == len(finished)  # nothing left running or failed
    for n in range(SHARDS):
        tuning = json.loads((tmp_path / f"s{n}" / "manifest.json").read_text())["tuning"]
        assert tuning["study"] == "shared" and "postgresql://" in tuning["storage"]
    late = subprocess.run(  # a shard started after the budget was reached runs no trial
        [*TUNE, *common, *tiny, "--out", str(tmp_path / "late")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert late.returncode == 0, late.stderr
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == len(finished)
