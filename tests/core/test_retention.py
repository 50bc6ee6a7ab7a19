"""Retention (CLOSECAST_KEEP_VERSIONS) and deletion never touch a version that is current or was promoted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from closecast import registry, retention
from closecast.errors import RegistryConflict
from tests.helpers import FIXTURE_BUNDLE

P1, P2 = "20990101T000000Z-promote1", "20990102T000000Z-promote2"
U1, U2, U3 = "20990103T000000Z-unprom01", "20990104T000000Z-unprom02", "20990105T000000Z-unprom03"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    for version in (P1, P2, U1, U2, U3):
        shutil.copytree(FIXTURE_BUNDLE, tmp_path / version)
    registry.set_current(tmp_path, P1)
    registry.set_current(tmp_path, P2)
    return tmp_path


def test_prune_keeps_the_newest_never_promoted_versions_and_every_promoted_one(model_dir: Path) -> None:
    assert retention.prune_versions(model_dir, keep=1) == [U1, U2]
    assert registry.list_versions(model_dir) == [P1, P2, U3]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".deleted-")]
    assert retention.prune_versions(model_dir, keep=1) == []


def test_a_version_in_the_history_is_never_deleted(model_dir: Path) -> None:
    with pytest.raises(RegistryConflict, match="is the current version of model 'aapl'"):
        retention.delete_version(model_dir, "aapl", P2)
    with pytest.raises(RegistryConflict, match="is in its promotion history"):
        retention.delete_version(model_dir, "aapl", P1)
    retention.delete_version(model_dir, "aapl", U1)
    assert registry.list_versions(model_dir) == [P1, P2, U2, U3]
