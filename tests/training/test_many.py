"""The CLI on timestamps and many series: hourly data trains, several series train together split by time,
and ``evaluate`` scores the right closes by default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.synthetic import hourly_stamps, make_closes, write_csv, write_long_csv
from training.__main__ import main

TINY_FLAGS = ["--quiet", "--window", "11", "--hidden-size", "4", "--epochs", "2", "--seed", "3"]


def _train(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bundle"
    assert main(["train", "--out", str(out), *TINY_FLAGS, *args]) == 0
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def _hourly_csv(
    path: Path, n: int, seed: int = 0, column: str = "Close", start: str = "2017-04-17T00:00:00"
) -> Path:
    stamps = [t.replace("T", " ") for t in hourly_stamps(n, start=start)]
    closes = make_closes(n, level=1.1, seed=seed)
    path.write_text(
        f"Date,{column}\n" + "".join(f"{d},{c:.6f}\n" for d, c in zip(stamps, closes, strict=True))
    )
    return path


def test_hourly_csv_with_timestamps_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _train(tmp_path, "--csv", str(_hourly_csv(tmp_path / "eurusd.csv", 200)))
    data = manifest["data"]
    assert data["rows_used"] == 200 and data["frequency"] == "1h"
    assert (
        data["date_start"] == "2017-04-17T00:00:00" and data["date_end"] == "2017-04-27T07:00:00"
    )  # 120 h a week, weekends skipped
    assert "test MAE" in capsys.readouterr().out


def _dated_targets(manifest: dict[str, Any], csvs: dict[str, Path]) -> tuple[list[str], list[str]]:
    """Training and test target dates of each series, from the manifest's per-series split."""
    train, test = [], []
    for entry in manifest["data"]["series"]:
        dates = [line.split(",")[0] for line in csvs[entry["name"]].read_text().splitlines()[1:]]
        train += dates[11 : entry["split"]["train"]]
        test += dates[entry["split"]["test_start"] :]
    return train, test


def test_two_csv_files_train_together_split_by_time(tmp_path: Path) -> None:
    csvs = {
        "sp": write_csv(tmp_path / "sp.csv", make_closes(300), start="2020-01-01"),
        "msft": write_csv(tmp_path / "msft.csv", make_closes(200, level=30.0, seed=1), start="2020-05-01"),
    }
    manifest = _train(tmp_path, "--csv", str(csvs["sp"]), "--csv", str(csvs["msft"]))
    data = manifest["data"]
    assert [e["name"] for e in data["series"]] == ["sp", "msft"]
    assert data["frequency"] == "1d" and data["split"]["by"] == "time" and data["date_end"] == "2020-11-16"
    train, test = _dated_targets(manifest, csvs)
    assert train and test and max(train) < min(test)  # no test target earlier than any training target
    assert manifest["metrics"]["test"]["n"] == sum(e["split"]["test"] for e in data["series"])


def test_long_format_csv_with_two_ids_trains(tmp_path: Path) -> None:
    stamps = hourly_stamps(150, zone="Z")
    rows = [
        (sym, t, c)
        for sym, seed in (("EURUSD", 0), ("GBPUSD", 1))
        for t, c in zip(stamps, make_closes(150, seed=seed), strict=True)
    ]
    path = write_long_csv(tmp_path / "fx.csv", rows, id_column="symbol")
    manifest = _train(tmp_path, "--csv", str(path), "--id-column", "symbol")
    data = manifest["data"]
    assert [e["name"] for e in data["series"]] == ["EURUSD", "GBPUSD"]
    assert data["id_column"] == "symbol" and manifest["config"]["data"]["id_column"] == "symbol"
    assert all(e["frequency"] == "1h" and e["source"] == "fx.csv" for e in data["series"])


def _evaluate(capsys: pytest.CaptureFixture[str], bundle: Path, *args: str) -> tuple[dict[str, Any], str]:
    assert main(["evaluate", "--bundle", str(bundle), *args]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


@pytest.fixture(scope="module")
def price_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained on column "Price" of an hourly file: evaluate must find that column without a flag."""
    tmp = tmp_path_factory.mktemp("price")
    csv = _hourly_csv(tmp / "train.csv", 200, column="Price")
    assert (
        main(["train", "--csv", str(csv), "--out", str(tmp / "bundle"), "--column", "Price", *TINY_FLAGS])
        == 0
    )
    return tmp


def test_evaluate_scores_the_test_part_of_the_training_file(
    price_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, err = _evaluate(capsys, price_bundle / "bundle", "--csv", str(price_bundle / "train.csv"))
    assert result["part"] == "test" and result["n"] == 200 - 160 and result["warnings"] == []
    assert "warning" not in err and "closes from 'Price'" in err  # only the columns read
    everything, _ = _evaluate(
        capsys, price_bundle / "bundle", "--csv", str(price_bundle / "train.csv"), "--part", "all"
    )
    assert everything["part"] == "all" and everything["n"] == 200 - 11


def test_evaluate_scores_another_file_after_the_training_data(
    price_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 hours from the same start: the last 100 come after the model's data
    later = _hourly_csv(tmp_path / "later.csv", 300, seed=5, column="Price")
    result, _ = _evaluate(capsys, price_bundle / "bundle", "--csv", str(later))
    assert result["part"] == "after_training_data" and result["n"] == 100
    assert (
        result["date_start"]
        > json.loads((price_bundle / "bundle" / "manifest.json").read_text())["data"]["date_end"]
    )


def test_evaluate_warns_when_another_file_may_overlap(
    price_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    older = _hourly_csv(tmp_path / "older.csv", 100, seed=5, column="Price", start="2016-01-04T00:00:00")
    result, err = _evaluate(capsys, price_bundle / "bundle", "--csv", str(older))
    assert result["part"] == "all" and result["n"] == 100 - 11
    assert err.count("warning:") == 1 and "warning: older: no closes after the model's data" in err


def test_evaluate_test_part_needs_a_training_file(
    price_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _hourly_csv(tmp_path / "other.csv", 100, seed=5, column="Price")
    assert (
        main(["evaluate", "--bundle", str(price_bundle / "bundle"), "--csv", str(other), "--part", "test"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--part test needs a series the model was trained on" in err
