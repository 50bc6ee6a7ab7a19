"""The Optuna search on tiny models: the bundle and its ``tuning`` section, resuming a study, and the proof
that the objective never sees the test part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from closecast.bundle import load_forecaster
from closecast.config import DataConfig
from closecast.series import load_csv, make_split
from tests.synthetic import make_closes, write_csv
from training.__main__ import main
from training.tune import Search, make_objective, redact

TINY_FLAGS = ["--epochs", "2", "--hidden-size", "4", "--folds", "2", "--quiet", "--jobs", "1"]
FIXED = {"window": 11, "hidden_size": 4, "num_layers": 1, "dropout": 0.0, "lr": 0.01, "batch_size": 64,
         "loss": "huber", "bidirectional": False, "epochs": 2}  # fmt: skip


def _search(**overrides: object) -> Search:
    values: dict = {"base": FIXED, "trials": 1, "timeout": None, "trial_timeout": None, "folds": 2,
                    "storage": "sqlite:///:memory:", "study": "t", "quiet": True, **overrides}  # fmt: skip
    return Search(**values)


def test_tiny_study_writes_a_bundle_with_its_tuning_section(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(260))
    out = tmp_path / "tuned"
    assert (
        main(["tune", "--csv", str(csv), "--out", str(out), "--trials", "3", "--window", "11", *TINY_FLAGS])
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    tuning = manifest["tuning"]
    assert tuning["n_trials"] == 3 == tuning["n_complete"] + tuning["n_pruned"]
    assert tuning["best_params"]["hidden_size"] == 4 and tuning["best_params"]["window"] == 11
    assert manifest["config"]["model"]["hidden_size"] == 4
    assert tuning["best_value"] == pytest.approx(np.mean(tuning["best_fold_ratios"]))
    assert tuning["study"] == "closecast-p" and tuning["storage"].endswith("closecast-p.optuna.sqlite3")
    assert {"fixed", "objective", "search_seconds", "search_space"} <= set(tuning)
    assert "tuning.png" in manifest["files"]
    load_forecaster(out, providers="cpu")  # an ordinary, verifiable bundle


def test_resuming_a_study_adds_trials(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(260, seed=4))
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    common = ["tune", "--csv", str(csv), "--storage", storage, "--study", "s", "--window", "11", *TINY_FLAGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--trials", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--trials", "1"]) == 0
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["tuning"]["n_trials"] == 3


def test_the_objective_never_sees_the_test_part(tmp_path: Path) -> None:
    """Poisoning the test part leaves the objective as it was; poisoning the development part does not."""
    closes = make_closes(300, seed=5)
    val_end = make_split(closes.size, DataConfig()).val_end

    def objective(values: np.ndarray) -> float:
        series = load_csv(write_csv(tmp_path / "p.csv", values))
        return make_objective(series, _search())(optuna.trial.FixedTrial({}))

    clean = objective(closes)
    poisoned_test = closes.copy()
    poisoned_test[val_end:] *= np.exp(np.random.default_rng(0).normal(0, 0.2, closes.size - val_end))
    assert objective(poisoned_test) == clean
    poisoned_dev = closes.copy()
    poisoned_dev[val_end - 20 : val_end] *= 1.5
    assert objective(poisoned_dev) != clean


def test_tune_refuses_a_series_too_short_for_its_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(120))
    code = main(["tune", "--csv", str(csv), "--out", str(tmp_path / "x"), "--folds", "4", *TINY_FLAGS[:4]])
    err = capsys.readouterr().err
    assert code == 2 and "smallest walk-forward fold has" in err and "fewer --folds" in err
    assert not (tmp_path / "x").exists()


def test_storage_urls_lose_their_password() -> None:
    assert redact("postgresql://u:secret@db:5432/optuna") == "postgresql://u:***@db:5432/optuna"
    assert redact("sqlite:////tmp/s.sqlite3") == "sqlite:////tmp/s.sqlite3"


def test_progress_file_gets_one_line_per_trial_then_the_refit_epochs(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(260))
    progress = tmp_path / "progress.jsonl"
    argv = ["tune", "--csv", str(csv), "--out", str(tmp_path / "t"), "--trials", "2", "--window", "11",
            "--progress-file", str(progress), *TINY_FLAGS]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    search = [e for e in lines if e["phase"] == "search"]
    assert [e["trials_done"] for e in search] == [1, 2] and all(e["trials"] == 2 for e in search)
    refit = [e for e in lines if e["phase"] == "refit"]
    assert refit and refit[0]["epoch"] == 1 and refit[-1]["trials_done"] == 2
    assert (
        refit[-1]["best_value"]
        == json.loads((tmp_path / "t" / "manifest.json").read_text())["tuning"]["best_value"]
    )


def test_parallel_trials_keep_the_study_in_out_and_resuming_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "p.csv", make_closes(260, seed=5))
    out = tmp_path / "tuned"
    argv = ["tune", "--csv", str(csv), "--out", str(out), "--window", "11", *TINY_FLAGS, "--jobs", "2"]
    assert main([*argv, "--trials", "4"]) == 0
    study_file = out / "closecast-p.optuna.sqlite3"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tuning"]["n_trials"] == 4 and study_file.name in manifest["files"]
    assert not (tmp_path / study_file.name).exists() and not (Path.cwd() / study_file.name).exists()
    trials = optuna.load_study(study_name="closecast-p", storage=f"sqlite:///{study_file}").trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.user_attrs["params"]["threads"] == 1 for t in trials)
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans for b in spans if a != b)  # two ran at once
    assert "resuming" not in capsys.readouterr().err
    assert main([*argv, "--trials", "1", "--force"]) == 0
    assert "resuming study 'closecast-p'" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["tuning"]["n_trials"] == 5
    load_forecaster(out, providers="cpu")
