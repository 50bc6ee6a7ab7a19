"""A training process outlives nobody: it ends itself when its service dies, and at its own time limit.

Real processes throughout: a real ``python -m app`` server that is SIGKILLed (no shutdown code runs), and the
training CLI run directly with ``--time-limit`` and ``--parent-pid``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import running_server
from tests.jobs.helpers import AUTH, KEY, TINY, wait_for
from tests.jobs.test_failures import training_pids
from tests.synthetic import random_walk

ROOT = Path(__file__).resolve().parents[2]
LONG = {**TINY, "epochs": 100_000, "patience": 100_000}  # would train for hours if nothing stopped it


def _csv(path: Path, n: int = 300) -> Path:
    path.write_text("Close\n" + "".join(f"{x:.6f}\n" for x in random_walk(n, seed=3)))
    return path


def test_training_ends_itself_when_its_server_is_sigkilled(model_dir: Path) -> None:
    with running_server(model_dir, api_key=KEY, train_threads="1") as server:
        _kill_server_mid_job(server.proc, server.url)


def _kill_server_mid_job(proc: subprocess.Popen[str], base: str) -> None:
    body = {"closes": [float(c) for c in random_walk(300, seed=4)], "params": LONG}
    response = httpx.post(f"{base}/train", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    (child,) = wait_for(lambda: training_pids(job_id), timeout=30)
    assert os.getsid(child) == child  # its own session: the server's death alone does not end it
    assert f"--parent-pid={proc.pid}".encode() in Path(f"/proc/{child}/cmdline").read_bytes()

    def epoch() -> int:
        progress = httpx.get(f"{base}/train/{job_id}", headers=AUTH, timeout=5).json()["progress"] or {}
        return int(progress.get("epoch") or 0)

    wait_for(lambda: epoch() >= 2, timeout=60, every=0.2)  # mid-run: torch imported, the fit loop going
    proc.kill()  # SIGKILL: no shutdown code runs in the server
    killed_at = time.monotonic()
    proc.wait()
    wait_for(lambda: training_pids(job_id) == [], timeout=10)
    assert time.monotonic() - killed_at < 10


def test_training_ends_itself_at_its_own_time_limit(tmp_path: Path) -> None:
    out = tmp_path / "bundles" / "v1"
    command = [sys.executable, "-m", "training", "train", "--quiet", "--csv", str(_csv(tmp_path / "s.csv"))]
    command += [
        "--out",
        str(out),
        "--time-limit",
        "2",
        *(f"--{k.replace('_', '-')}={v}" for k, v in LONG.items()),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 124, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "python -m training train: error: training ran longer than its time limit of 2 s; "
        "stopped (--time-limit)"
    )
    assert took < 2 + 8  # interpreter start-up before the clock starts, plus the stop itself
    assert not out.exists()
    assert not (out.parent.exists() and list(out.parent.iterdir()))  # no temporary directory either


def _wait_for_torch(process: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """Until ``process`` has mapped libtorch: a fixed sleep lost the race on a loaded machine (the guard had
    not started yet, so the run refused to start instead of stopping)."""
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if "libtorch" in maps.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"training process {process.pid} did not import torch within {timeout_s:g} s")


def test_training_ends_itself_when_the_watched_process_ends(tmp_path: Path) -> None:
    """Also when the watched process is not its direct parent (a wrapper between): its /proc start time."""
    watched = subprocess.Popen(["sleep", "120"])
    command = [sys.executable, "-m", "training", "train", "--quiet", "--csv", str(_csv(tmp_path / "s.csv"))]
    command += ["--out", str(tmp_path / "v1"), f"--parent-pid={watched.pid}", f"--epochs={LONG['epochs']}"]
    training = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_torch(training)  # torch is imported after the guard started: the run is under way
        assert training.poll() is None
        watched.send_signal(signal.SIGKILL)
        watched.wait()
        _, stderr = training.communicate(timeout=10)
    finally:
        watched.kill()
        training.kill()
    assert training.returncode == 125, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"python -m training train: error: the service process {watched.pid} that started this run is gone; "
        "stopped (--parent-pid)"
    )
    assert not (tmp_path / "v1").exists()


def test_training_refuses_to_start_for_a_process_that_is_gone(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    command = [sys.executable, "-m", "training", "train", "--csv", str(_csv(tmp_path / "s.csv"))]
    command += ["--out", str(tmp_path / "v1"), f"--parent-pid={gone.pid}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 125
    assert done.stderr.strip().splitlines()[-1] == (
        f"python -m training train: error: the service process {gone.pid} is not running; not starting "
        "(--parent-pid)"
    )
