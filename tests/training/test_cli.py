"""The CLI contract: bad input -> exit code 2, one line naming the problem, nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import make_closes, write_csv
from training.__main__ import main


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return path


def _good_rows(n: int = 120) -> list[str]:
    closes = make_closes(n)
    return [f"2020-01-{1 + i // 28:02d}T00:{i % 28:02d},{c:.4f}" for i, c in enumerate(closes)]


def _run_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    out = tmp_path / "bundle"
    code = main(["train", "--out", str(out), "--window", "11", "--epochs", "1", "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    return err


def test_train_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_bad(tmp_path, capsys, "--csv", str(tmp_path / "nope.csv"))
    assert "file not found" in err and "nope.csv" in err


def test_train_missing_column_lists_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(100), column="Price")
    err = _run_bad(tmp_path, capsys, "--csv", str(path))
    assert "column 'Close' not found in p.csv; columns are: Date, Price" in err


def test_train_non_numeric_cell_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _good_rows()
    rows[9] = "2021-05-05,abc"
    err = _run_bad(
        tmp_path, capsys, "--csv", str(_csv(tmp_path, "Date,Close\n" + "\n".join(rows))), "--date-column", ""
    )
    assert "line 11: Close is 'abc'; expected a number" in err


def test_train_non_positive_price_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(100))
    lines = path.read_text().splitlines()
    lines[4] = lines[4].split(",")[0] + ",-3.5"
    path.write_text("\n".join(lines))
    err = _run_bad(tmp_path, capsys, "--csv", str(path))
    assert "line 5: Close is '-3.5'; prices must be > 0" in err


def test_train_too_few_rows_says_how_many_needed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _run_bad(tmp_path, capsys, "--csv", str(write_csv(tmp_path / "p.csv", make_closes(30))))
    assert "only 30 usable closes; window 11" in err and "needs at least 50" in err


def test_train_duplicate_date_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(100))
    lines = path.read_text().splitlines()
    lines[8] = lines[7].split(",")[0] + "," + lines[8].split(",")[1]
    path.write_text("\n".join(lines))
    err = _run_bad(tmp_path, capsys, "--csv", str(path))
    assert "line 9: Date is 2020-01-07, the same date as line 8: Date; keep one row per date" in err


def test_train_unsorted_dates_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(100))
    lines = path.read_text().splitlines()
    lines[10], lines[20] = lines[20], lines[10]
    path.write_text("\n".join(lines))
    err = _run_bad(tmp_path, capsys, "--csv", str(path))
    # rows 10 and 20 swapped: the first place the order breaks is line 12, after the late date on line 11
    expected = "line 12: Date is 2020-01-11, earlier than line 11: Date (2020-01-20); sort the rows by date"
    assert expected in err


def test_train_refuses_existing_bundle_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code = main(["train", "--csv", str(write_csv(tmp_path / "p.csv", make_closes(100))), "--out", str(out)])
    assert code == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_flag_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training", "train", "--csv", "x.csv", "--out", "y", "--window", "many"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "python -m training train: error: argument --window: invalid int value: 'many'"
    ]


def test_train_unreadable_csv_row_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"2020-01-{i + 1:02d},{100 + i}" for i in range(5)]
    rows[3] = "2020-01-04," + "9" * 200_000  # longer than the csv module's field limit
    err = _run_bad(tmp_path, capsys, "--csv", str(_csv(tmp_path, "Date,Close\n" + "\n".join(rows))))
    assert "prices.csv line 5 is not readable CSV: field larger than field limit" in err


def test_train_non_utf8_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(b"Date,Close\n2020-01-01,1\xff\xfe00\n")
    err = _run_bad(tmp_path, capsys, "--csv", str(path))
    assert "is not readable CSV" in err and "utf-8" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--train-frac", "1e-9"], "train_frac is 1e-09; it must be in [0.3, 0.95]"),
        (["--val-frac", "0.6"], "val_frac is 0.6; it must be in [0.02, 0.5]"),
        (["--train-frac", "0.9", "--val-frac", "0.09"], "leaves under 2% for the test part"),
        (["--window", "2"], "window is 2; it must be in [3, 1000] closes"),
    ],
)
def test_train_out_of_range_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    path = write_csv(tmp_path / "p.csv", make_closes(100))
    out = tmp_path / "bundle"
    assert main(["train", "--csv", str(path), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_train_flat_series_exits_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _run_bad(tmp_path, capsys, "--csv", str(write_csv(tmp_path / "p.csv", np.full(100, 42.0))))
    assert "the training returns have standard deviation 0.0; a constant series cannot be scaled" in err


def test_train_closing_line_gives_the_skills_error_bar_and_flags_an_untrained_model(
    synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning rate of 1e-9 cannot move the validation loss: the bundle is flagged untrained."""
    out = tmp_path / "bundle"
    argv = ["train", "--csv", str(synthetic_csv), "--out", str(out), "--window", "11", "--hidden-size", "8"]
    assert main([*argv, "--epochs", "2", "--lr", "1e-9", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    test = json.loads((out / "manifest.json").read_text())["metrics"]["test"]
    assert f"skill {test['skill']:+.4f} ± {test['skill_se']:.4f} (s.e.), Diebold–Mariano p " in line
    assert f"p {test['dm_pvalue']:.3g}: {test['verdict']}," in line
    assert line.endswith(
        "; UNTRAINED: no epoch beat the starting weights on the validation loss (best epoch 0)"
    )
