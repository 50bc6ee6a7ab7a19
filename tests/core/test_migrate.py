"""A registry in the flat layout (a Docker volume of the image before named models) is moved under the default
model's name at start: by one process under the lock, in one visible step, resumable after a crash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from closecast import migrate, registry
from tests.helpers import DEFAULT, FIXTURE_BUNDLE, ROOT, make_settings
from tests.synthetic import calm_walk

OLD, NEW = "20991201T000000Z-flat0001", "20991202T000000Z-flat0002"


def flat_registry(root: Path) -> Path:
    """Two versions, the second current, a history of both, and a job store: the previous image's volume."""
    for version in (OLD, NEW):
        shutil.copytree(FIXTURE_BUNDLE, root / version)
        registry.set_current(root, version, "before named models")
    (root / "jobs.sqlite").write_bytes(b"jobs")
    return root


def test_migration_moves_versions_pointer_and_history_under_the_default_name(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    history = (root / registry.PROMOTIONS).read_bytes()
    assert migrate.prepare_registry(root, DEFAULT) == ["migrated the flat layout to model 'default'"]
    assert registry.list_versions(root) == [] and not (root / registry.CURRENT_POINTER).exists()
    assert registry.list_versions(root / DEFAULT) == [OLD, NEW]
    assert registry.read_current(root / DEFAULT) == NEW
    assert (root / DEFAULT / registry.PROMOTIONS).read_bytes() == history
    assert (root / "jobs.sqlite").read_bytes() == b"jobs"  # the job store stays in the root
    assert not [p for p in root.iterdir() if p.name.startswith(migrate.STAGING_PREFIX)]
    assert migrate.prepare_registry(root, DEFAULT) == []  # once only


def test_migration_uses_the_configured_default_name(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    migrate.prepare_registry(root, "spx")
    assert registry.list_models(root) == ["spx"] and registry.read_current(root / "spx") == NEW


def test_a_migration_interrupted_half_way_is_resumed(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    staging = root / f"{migrate.STAGING_PREFIX}{DEFAULT}"
    staging.mkdir()
    (root / OLD).rename(staging / OLD)  # the crash came after the first rename
    assert migrate.prepare_registry(root, DEFAULT) == ["migrated the flat layout to model 'default'"]
    assert registry.list_versions(root / DEFAULT) == [OLD, NEW]
    assert registry.read_current(root / DEFAULT) == NEW and not staging.exists()


def test_flat_versions_beside_a_default_model_dir_stop_the_start_with_what_to_do(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    shutil.copytree(FIXTURE_BUNDLE, root / DEFAULT / OLD)
    with pytest.raises(migrate.MigrationConflict, match="move the flat versions into default/"):
        migrate.prepare_registry(root, DEFAULT)
    assert registry.list_versions(root) == [OLD, NEW]  # nothing moved


def test_the_app_migrates_a_flat_registry_in_its_lifespan(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    with TestClient(create_app(make_settings(root))) as c:
        answer = c.post("/forecast", json={"closes": calm_walk()}).json()
        assert (answer["model"], answer["model_version"]) == ("default", NEW)
        assert [m["model"] for m in c.get("/models").json()["models"]] == ["default"]


_STARTER = """
import json, sys, time
from pathlib import Path
from closecast import migrate
root = Path(sys.argv[1])
while time.time() < float(sys.argv[2]):  # both processes leave this line at the same instant
    pass
print(json.dumps(migrate.prepare_registry(root, "default")))
"""


def test_two_processes_starting_at_once_migrate_once(tmp_path: Path) -> None:
    root = flat_registry(tmp_path / "models")
    go = str(time.time() + 2.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _STARTER, str(root), go], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(outputs, key=len) == [[], ["migrated the flat layout to model 'default'"]]
    assert registry.list_versions(root / DEFAULT) == [OLD, NEW]
    assert registry.read_current(root / DEFAULT) == NEW
    assert registry.list_models(root) == [DEFAULT] and registry.list_versions(root) == []
