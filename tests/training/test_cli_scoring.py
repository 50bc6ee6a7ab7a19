"""``python -m training backtest`` and ``evaluate`` as a user runs them (real subprocesses): a features
model reads its features from the CSV's columns and says which it used; a CSV without them is one error
line and exit code 2; and every flag of every subcommand explains itself in ``--help``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic import make_closes, write_csv, write_ohlcv_csv
from training.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("high", "low", "volume")
TINY = ["--window", "11", "--hidden-size", "8", "--epochs", "2", "--seed", "7", "--quiet"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def ohlcv_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ohlcv_csv(tmp_path_factory.mktemp("ohlcv") / "ohlcv.csv")


@pytest.fixture(scope="module")
def features_bundle(ohlcv_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "features"
    argv = ["train", "--csv", str(ohlcv_csv), "--features", ",".join(FEATURES), "--out", str(out), *TINY]
    assert main([*argv, "--no-report"]) == 0
    return out


def test_backtest_of_a_features_model_reads_its_columns(features_bundle: Path, ohlcv_csv: Path) -> None:
    done = _cli(
        "backtest", "--bundle", str(features_bundle), "--csv", str(ohlcv_csv), "--folds", "3", "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["folds"]) == 3 and result["overall"]["n"] == sum(f["n"] for f in result["folds"])
    assert "features high, low, volume" in done.stderr and "closes from 'Close'" in done.stderr


def test_evaluate_of_a_features_model_reads_its_columns(features_bundle: Path, ohlcv_csv: Path) -> None:
    done = _cli("evaluate", "--bundle", str(features_bundle), "--csv", str(ohlcv_csv))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["part"] == "test" and result["n"] > 0
    assert result["columns"] == {"close": "Close", "date": "Date", "features": list(FEATURES)}
    assert "features high, low, volume" in done.stderr


@pytest.mark.parametrize("command", ["backtest", "evaluate"])
def test_features_model_on_a_closes_only_csv_is_one_error_line(
    command: str, features_bundle: Path, tmp_path: Path
) -> None:
    csv = write_csv(tmp_path / "closes.csv", make_closes(300))
    done = _cli(command, "--bundle", str(features_bundle), "--csv", str(csv))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "feature column 'high'" in lines[0] and len(lines[0]) < 500, done.stderr


def test_closes_only_model_backtests_from_the_cli(tiny_bundle: Path, synthetic_csv: Path) -> None:
    done = _cli("backtest", "--bundle", str(tiny_bundle), "--csv", str(synthetic_csv), "--folds", "2")
    assert done.returncode == 0, done.stderr
    assert "no features (the bundle reads none)" in done.stderr and "all" in done.stdout


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    """Every action of ``parser`` and of its subcommands, each named by its command path."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_flag_of_every_subcommand_has_help() -> None:
    actions = _actions(build_parser(), "python -m training")
    commands = {path.split()[-1] for path, _ in actions}
    assert commands == {"train", "evaluate", "backtest", "tune"}
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in actions if not a.help]
    assert missing == []
