"""Jobs that go wrong leave the registry and the served model as they were, and say why they failed.

Real training subprocesses are killed early here (seconds, not a whole training); a full disk and a
damaged bundle are simulated by giving the runner a wrapper in place of the Python interpreter.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, build_app, job, submit, trainer_settings, wait_for, wait_status
from tests.synthetic import random_walk

SERIES = random_walk(300, seed=2)


def training_pids(job_id: str) -> list[int]:
    """Processes whose command line names the job's work dir (what `ps aux | grep <job_id>` finds)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if job_id.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def niceness(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of proc(5); fields[0] is field 3


def assert_untouched(client: TestClient, model_dir: Path) -> None:
    """The fixture is still the only version, current and served; nothing half-written is left."""
    assert registry.list_versions(model_dir / DEFAULT) == [FIXTURE_VERSION]
    assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
    body = {"closes": SERIES[-20:].tolist()}
    assert client.post("/forecast", json=body).json()["model_version"] == FIXTURE_VERSION
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".") and p.name != ".jobs"] == []
    wait_for(lambda: list((model_dir / ".jobs").iterdir()) == [], timeout=30)


def wrapper(path: Path, body: str) -> str:
    """An executable shell script standing in for the interpreter that runs ``-m training``."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_sigkill_of_the_training_process_fails_the_job_and_keeps_the_model(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir, train_nice=7))) as client:
        job_id = submit(client, SERIES)
        (pid,) = wait_for(lambda: training_pids(job_id), timeout=30)
        assert niceness(pid) == niceness(os.getpid()) + 7 and os.getsid(pid) == pid  # niced, own session
        wait_for(lambda: job(client, job_id)["progress"]["epoch"] >= 1, timeout=60)  # mid-run, not at start
        os.kill(pid, signal.SIGKILL)
        final = wait_status(client, job_id, "succeeded", "failed", "cancelled")
        assert final["status"] == "failed"
        assert final["error"] == (
            "the training process was killed by SIGKILL (out of memory, or killed by an operator)"
        )
        assert final["result"] is None
        assert_untouched(client, model_dir)


@dataclass
class QueueStory:
    client: TestClient
    model_dir: Path
    answers: dict[str, Any]
    pids: dict[str, list[int]]


@pytest.fixture(scope="module")
def queue_story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueStory]:
    """Queue size 1: A runs, B waits, C is refused, B is cancelled, D waits with data damaged on disk after
    it was accepted, A is cancelled while training, then D runs and the CLI refuses D's data."""
    model_dir = copy_registry(tmp_path_factory.mktemp("queue") / "models")
    answers: dict[str, Any] = {}
    with TestClient(build_app(trainer_settings(model_dir, job_queue_size=1))) as client:
        a = submit(client, SERIES)
        a_pids = wait_for(lambda: training_pids(a), timeout=30)
        b = submit(client, SERIES)
        answers["B queued"] = job(client, b)
        answers["C"] = client.post("/train", json={"closes": SERIES.tolist()}, headers=AUTH)
        answers["cancel B"] = client.delete(f"/train/{b}", headers=AUTH)
        answers["cancel B again"] = client.delete(f"/train/{b}", headers=AUTH)
        answers["B work dir"] = (model_dir / ".jobs" / b).exists()
        d = submit(client, SERIES)
        csv = model_dir / ".jobs" / d / "request.csv"
        lines = csv.read_text().splitlines()
        lines[4] = "-1.5"  # line 5 of the file
        csv.write_text("\n".join(lines) + "\n")
        answers["cancel A"] = client.delete(f"/train/{a}", headers=AUTH)
        answers["A pids after"] = training_pids(a)
        answers["D"] = wait_status(client, d, "succeeded", "failed", "cancelled")
        yield QueueStory(client, model_dir, answers, {"A": a_pids})


def test_a_full_queue_answers_429(queue_story: QueueStory) -> None:
    assert queue_story.answers["B queued"]["status"] == "queued"
    c = queue_story.answers["C"]
    assert c.status_code == 429 and c.headers["retry-after"] == "30"
    assert "CLOSECAST_JOB_QUEUE_SIZE" in c.json()["detail"]


def test_cancelling_a_queued_job_drops_it(queue_story: QueueStory) -> None:
    cancelled = queue_story.answers["cancel B"]
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["started_at"] is None
    again = queue_story.answers["cancel B again"]
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert queue_story.answers["B work dir"] is False


def test_cancelling_a_running_job_kills_its_process(queue_story: QueueStory) -> None:
    cancelled = queue_story.answers["cancel A"]
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"] == "cancelled by request" and cancelled.json()["result"] is None
    assert queue_story.answers["A pids after"] == []


def test_cli_refusal_fails_the_job_with_the_cli_message(queue_story: QueueStory) -> None:
    d = queue_story.answers["D"]
    assert d["status"] == "failed"
    assert d["error"] == "python -m training train: error: line 5: Close is '-1.5'; prices must be > 0"


def test_failures_leave_the_registry_and_the_model_alone(queue_story: QueueStory) -> None:
    assert_untouched(queue_story.client, queue_story.model_dir)


def test_timeout_kills_the_training(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir, train_timeout_s=1.0))) as client:
        job_id = submit(client, SERIES)
        final = wait_status(client, job_id, "succeeded", "failed", "cancelled")
        assert final["error"] == "training ran longer than 1 s (CLOSECAST_TRAIN_TIMEOUT_S); killed"
        assert training_pids(job_id) == []
        assert_untouched(client, model_dir)


def test_full_disk_fails_the_job_and_keeps_the_model(model_dir: Path, tmp_path: Path) -> None:
    # `ulimit -f 0`: every write the training process makes fails (EFBIG), as on a full disk (ENOSPC).
    python = wrapper(tmp_path / "python", f'ulimit -f 0\nexec "{sys.executable}" "$@"')
    with TestClient(build_app(trainer_settings(model_dir), python=python)) as client:
        final = wait_status(client, submit(client, SERIES), "succeeded", "failed", "cancelled")
        assert final["status"] == "failed"
        # the process's own last word, whichever write failed first (a crash, or the CLI's exit 2)
        assert final["error"].startswith(("the training process exited with code 1: ", "python -m training"))
        assert "[Errno" in final["error"]
        assert_untouched(client, model_dir)


FAKE_TRAINER = """
import shutil, sys
out = next(a.removeprefix("--out=") for a in sys.argv if a.startswith("--out="))
shutil.copytree(sys.argv[1], out)
with open(out + "/model.onnx", "r+b") as fh:  # flip one byte: the manifest's sha256 no longer matches
    fh.seek(100)
    byte = fh.read(1)
    fh.seek(100)
    fh.write(bytes([byte[0] ^ 0xFF]))
"""


def test_damaged_candidate_bundle_is_discarded(model_dir: Path, tmp_path: Path) -> None:
    # A stand-in trainer that writes a complete bundle with one damaged file: the runner must catch it.
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    python = wrapper(
        tmp_path / "python",
        f'exec "{sys.executable}" "{tmp_path / "fake_trainer.py"}" "{FIXTURE_BUNDLE}" "$@"',
    )
    with TestClient(build_app(trainer_settings(model_dir), python=python)) as client:
        job_id = submit(client, SERIES, promote="always")
        final = wait_status(client, job_id, "succeeded", "failed", "cancelled")
        assert final["status"] == "failed"
        assert final["error"].startswith("the new bundle failed verification and was discarded: ")
        assert "model.onnx is damaged: sha256" in final["error"]
        assert_untouched(client, model_dir)
