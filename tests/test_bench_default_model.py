"""`bench/default_model.py --csv`: the shipped default model judged on any series, through the script."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

from closecast.registry import read_current
from tests.synthetic import random_walk

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "default_model.py"
ROW = re.compile(r"^\| (?P<name>[^|]+) \| (?P<n>\d+) \| (?P<cells>.*) \|$")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def rows(stdout: str) -> dict[str, tuple[int, list[str]]]:
    """name -> (n, the other cells) for every table row that is not the header or its rule."""
    found = {}
    for line in stdout.splitlines():
        m = ROW.match(line)
        if m and m["name"] != "series":
            found[m["name"]] = (int(m["n"]), [c.strip() for c in m["cells"].split("|")])
    return found


def test_csv_without_dates_gets_one_row_with_skill_rises_and_coverage(tmp_path: Path) -> None:
    closes = random_walk(600, seed=7)
    path = tmp_path / "walk.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Price"])
        w.writerows([[repr(float(c))] for c in closes])
    done = run("--csv", str(path), "--column", "Price", "--test-start", "0.5")
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert list(table) == ["walk.csv (Price)"]
    n, (skill, se, nw, z, rise, corr, held80, held95) = table["walk.csv (Price)"]
    assert n == 600 - 300
    assert abs(float(skill)) < 0.5 and float(se) > 0 and float(nw) > 0
    ratio = float(skill) / float(se)  # from the printed, rounded figures
    assert abs(float(z) - ratio) <= 0.1 + 0.05 * abs(ratio)
    assert -1 <= float(corr) <= 1
    for share in (rise, held80, held95):
        assert share.endswith("%") and 0 <= float(share[:-1]) <= 100
    assert float(held80[:-1]) <= float(held95[:-1])


def test_a_file_the_bundle_trained_on_is_tested_from_the_bundles_own_test_start() -> None:
    registry = ROOT / "models" / "default"
    manifest = json.loads((registry / str(read_current(registry)) / "manifest.json").read_text())
    split = next(s["split"] for s in manifest["data"]["series"] if s["source"] == "msft_daily.csv")
    done = run("--csv", "data/msft_daily.csv")
    assert done.returncode == 0, done.stderr
    n, _ = rows(done.stdout)["msft_daily.csv (Close)"]
    assert n == split["test"]


def test_a_missing_column_is_one_line_on_stderr_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "no_close.csv"
    path.write_text("Date,Price\n2020-01-01,1.0\n2020-01-02,1.1\n")
    done = run("--csv", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no_close.csv" in done.stderr and "Close" in done.stderr
