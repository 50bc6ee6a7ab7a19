"""``python -m training backtest``: the JSON contract, in-sample flags, and refit folds that never train or
calibrate on their own future."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from closecast.overlap import recorded_series
from closecast.series import load_csv
from tests.synthetic import make_closes, write_csv
from training.__main__ import main
from training.folds import run_backtest


def test_backtest_json_prints_one_object_with_in_sample_flags(
    tiny_bundle: Path, synthetic_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--bundle", str(tiny_bundle), "--csv", str(synthetic_csv), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"folds", "overall"} and len(result["folds"]) == 5
    # the bundle was trained on this very file: folds with targets before its test part are in sample
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    test_start = recorded_series(manifest)[0]["split"]["test_start"]
    assert [f["in_sample"] for f in result["folds"]] == [f["start"] < test_start for f in result["folds"]]
    assert result["folds"][0]["in_sample"] is True
    assert all("dm_pvalue" in f and "skill_se" in f for f in [*result["folds"], result["overall"]])
    assert result["overall"]["n"] == sum(f["n"] for f in result["folds"])


def test_refit_folds_never_train_or_calibrate_on_their_future(tiny_bundle: Path, tmp_path: Path) -> None:
    """Wreck every close from fold 1 on: fold 0 (its model, intervals and scores) must not change."""
    closes = make_closes(300, seed=9)
    clean = run_backtest(
        tiny_bundle, load_csv(write_csv(tmp_path / "a.csv", closes)), folds=2, horizon=1, refit=True
    )
    start = clean["folds"][1]["start"]
    wrecked = closes.copy()
    wrecked[start:] *= np.exp(np.random.default_rng(1).normal(0, 0.3, closes.size - start))
    other = run_backtest(
        tiny_bundle, load_csv(write_csv(tmp_path / "b.csv", wrecked)), folds=2, horizon=1, refit=True
    )
    drop = ("model_version",)  # a new version id per refit
    assert {k: v for k, v in other["folds"][0].items() if k not in drop} == {
        k: v for k, v in clean["folds"][0].items() if k not in drop
    }
    assert other["folds"][1] != clean["folds"][1]
    assert all(f["in_sample"] is False for f in clean["folds"])


def test_backtest_too_short_exits_2_saying_how_many(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "short.csv", make_closes(40))
    assert main(["backtest", "--bundle", str(tiny_bundle), "--csv", str(csv), "--folds", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "closes has 40 values" in err and "send at least" in err
