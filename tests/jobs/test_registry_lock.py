"""The registry lock across processes (``closecast/registry_lock.py``): a real child process holds the flock
on ``<registry>/.registry.lock`` while the real app, or ``judge_and_register``, tries to change the registry.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.inference.holder import ModelHolder
from app.jobs import promotion
from app.jobs.gate import GateScores
from app.jobs.promotion import judge_and_register
from closecast import registry
from closecast.forecaster import Forecaster
from closecast.registry_lock import LOCK_FILE, RegistryBusy, registry_lock
from closecast.series import load_csv
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, FIXTURE_VERSION, SYNTHETIC_CSV
from tests.jobs.helpers import AUTH, build_app, trainer_settings
from tests.synthetic import calm_walk

OTHER = "20990101T000000Z-0therver"
CANDIDATE = "20300101T000000Z-candidate"

# flock the lock file, say so, then (optionally) roll the pointer back to argv[3] before releasing it.
HOLDER = """
import fcntl, os, sys, time
from pathlib import Path
from closecast import registry
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
if len(sys.argv) > 3:
    registry.set_current(Path(sys.argv[1]).parent / "default", sys.argv[3], "rollback")
"""


@contextmanager
def holding(root: Path, seconds: float, rollback_to: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """A child process holding the registry lock of ``root`` for ``seconds``; yields once it holds it."""
    args = [sys.executable, "-c", HOLDER, str(root / LOCK_FILE), str(seconds)]
    child = subprocess.Popen(
        [*args, *([rollback_to] if rollback_to else [])], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "locked\n"
        yield child
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _add_version(model_dir: Path, name: str = OTHER) -> None:
    shutil.copytree(model_dir / DEFAULT / FIXTURE_VERSION, model_dir / DEFAULT / name)


def test_a_promotion_waits_while_another_process_holds_the_lock(model_dir: Path) -> None:
    _add_version(model_dir)
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        with holding(model_dir, 1.0):
            start = time.monotonic()
            response = client.post(f"/models/default/versions/{OTHER}/promote", headers=AUTH)
            waited = time.monotonic() - start
        assert response.status_code == 200, response.text
        assert response.json()["previous"] == FIXTURE_VERSION
        assert registry.read_current(model_dir / DEFAULT) == OTHER
    print(f"promotion waited {waited:.3f} s for a holder of 1.0 s")
    assert 0.8 <= waited < 5.0  # the holder printed 'locked' before the clock started


def test_a_sigkilled_holder_releases_the_lock(model_dir: Path) -> None:
    _add_version(model_dir)
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        answer: list[int] = []
        with holding(model_dir, 600.0) as child:
            promoting = threading.Thread(
                target=lambda: answer.append(
                    client.post(f"/models/default/versions/{OTHER}/promote", headers=AUTH).status_code
                )
            )
            promoting.start()
            time.sleep(0.5)
            assert not answer and registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
            killed = time.monotonic()
            child.kill()  # SIGKILL: no cleanup of its own, the kernel drops the flock with its descriptors
            promoting.join(10.0)
            after_kill = time.monotonic() - killed
        assert answer == [200] and registry.read_current(model_dir / DEFAULT) == OTHER
    print(f"promotion done {after_kill:.3f} s after the holder was SIGKILLed")
    assert after_kill < 2.0


def test_a_rollback_by_another_process_during_the_job_stops_its_promotion(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the lock closes: another process rolls back between the gate's judging and the pointer write;
    the job sees it under the lock and does not override it."""
    real_compare = promotion.compare_on_test_part

    def compare(candidate: Forecaster, current: Forecaster, closes: Any) -> GateScores:
        # the candidate is a clone, which `auto` refuses as the same model; this test is about the pointer
        # moving after a decision to promote, so the clone passes for a different model that is not worse
        return dataclasses.replace(real_compare(candidate, current, closes), identical=False)

    monkeypatch.setattr(promotion, "compare_on_test_part", compare)
    _add_version(model_dir)
    holder = ModelHolder(model_dir, "cpu")
    holder.swap(holder.load_current())
    candidate = Path(shutil.copytree(FIXTURE_BUNDLE, tmp_path / "work" / CANDIDATE))
    with holding(model_dir, 1.0, rollback_to=OTHER) as child:
        outcome = judge_and_register(holder, candidate, "auto", lambda: load_csv(SYNTHETIC_CSV).closes)
        assert child.wait(10.0) == 0
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert outcome.result["promoted"] is False
    assert outcome.result["reason"].startswith(
        f"not promoted: the current model changed from {FIXTURE_VERSION} to {OTHER} during the job"
    )
    assert registry.read_current(model_dir / DEFAULT) == OTHER


def test_a_delete_waits_for_another_process_promoting_that_version_and_is_refused(model_dir: Path) -> None:
    """Without a database the file lock serialises deletion and promotion across processes: the child
    promotes ``OTHER`` inside the lock while the app is asked to delete it; the deletion checks only once
    the child let go, finds it current and refuses, and the pointer names a bundle that is there."""
    _add_version(model_dir)
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        answer: list[Any] = []
        with holding(model_dir, 1.0, rollback_to=OTHER) as child:
            deleting = threading.Thread(
                target=lambda: answer.append(client.delete(f"/models/default/versions/{OTHER}", headers=AUTH))
            )
            deleting.start()
            assert child.wait(10.0) == 0  # its promotion found the version there
            deleting.join(10.0)
        assert answer and answer[0].status_code == 409, answer and answer[0].text
        assert "current version" in answer[0].text
    assert registry.read_current(model_dir / DEFAULT) == OTHER
    assert registry.is_bundle(model_dir / DEFAULT, OTHER)


def test_a_lock_file_that_cannot_be_created_fails_changes_with_503_and_serving_goes_on(
    model_dir: Path,
) -> None:
    _add_version(model_dir)
    (model_dir / LOCK_FILE).mkdir()  # as root, chmod cannot make the model dir unwritable
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        response = client.post(f"/models/default/versions/{OTHER}/promote", headers=AUTH)
        assert response.status_code == 503, response.text
        assert response.json()["detail"] == (
            f"cannot make {OTHER} current in the model dir (CLOSECAST_MODEL_DIR): Is a directory; "
            "make it writable by the service"
        )
        deleted = client.delete(f"/models/default/versions/{OTHER}", headers=AUTH)
        assert deleted.status_code == 503, deleted.text
        assert client.post("/forecast", json={"closes": calm_walk()}).status_code == 200
    assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
    assert (model_dir / DEFAULT / OTHER).is_dir()


def test_serving_never_creates_the_lock_file(model_dir: Path) -> None:
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        assert client.post("/forecast", json={"closes": calm_walk()}).status_code == 200
        assert client.get("/models/default/versions", headers=AUTH).status_code == 200
    assert not (model_dir / LOCK_FILE).exists()


def test_a_holder_that_never_lets_go_makes_the_change_give_up(model_dir: Path) -> None:
    with holding(model_dir, 600.0):
        start = time.monotonic()
        with pytest.raises(RegistryBusy) as caught, registry_lock(model_dir, wait_s=0.3):
            pass
        waited = time.monotonic() - start
    assert 0.3 <= waited < 2.0
    assert caught.value.strerror == (
        f"the registry lock ({LOCK_FILE}) was held by another process for over 0.3 s; retry in a moment, "
        "or end the process holding it"
    )
    with registry_lock(model_dir, wait_s=0.3):  # released with the holder
        pass


def test_a_start_records_an_unrecorded_pointer_under_the_lock(model_dir: Path) -> None:
    """A registry from before the history: the start writes its pointer as the first promotion while holding
    the lock (workers starting together write one line), so it waits for another process's change."""
    (model_dir / DEFAULT / "promotions.jsonl").unlink()
    with holding(model_dir, 1.0):
        start = time.monotonic()
        with TestClient(build_app(trainer_settings(model_dir))) as client:
            waited = time.monotonic() - start
            assert client.post("/forecast", json={"closes": calm_walk()}).status_code == 200
    assert [p.version for p in registry.promotion_history(model_dir / DEFAULT)] == [FIXTURE_VERSION]
    assert 0.8 <= waited < 10.0, waited
    with TestClient(build_app(trainer_settings(model_dir))):  # recorded: a second start writes nothing
        pass
    assert len(registry.promotion_history(model_dir / DEFAULT)) == 1
