"""First start of a model volume: ``migrate.seed_model_dir`` copies the default registry into an empty dir.

Decision tested here: "empty" means *holds no version* (a valid-named directory with a ``manifest.json``).
A directory with only junk — ``lost+found`` of a fresh ext4 volume, a hidden temporary dir left by a crashed
seed, a half-written dir without a manifest, a stale ``current`` naming nothing — is seeded, and the junk is
left where it is (seeding never deletes anything).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from closecast import registry
from closecast.bundle import load_forecaster
from closecast.migrate import seed_model_dir

DEFAULT = Path(__file__).resolve().parent / "fixtures" / "models" / "default"
DEFAULT_VERSION = registry.read_current(DEFAULT) or "missing"
TRAINED_VERSION = "20991231T000000Z-trained1"


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file and directory under ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def _trained_registry(target: Path, *, with_pointer: bool) -> None:
    """A volume after a retrain: one version (a copy of the fixture bundle) and, usually, the pointer."""
    shutil.copytree(DEFAULT / DEFAULT_VERSION, target / TRAINED_VERSION)
    (target / "jobs.sqlite").write_bytes(b"job history")
    if with_pointer:
        registry.set_current(target, TRAINED_VERSION)


def test_seed_copies_default_into_empty_dir(tmp_path: Path) -> None:
    target = tmp_path / "volume"
    target.mkdir()
    assert seed_model_dir(target, DEFAULT) is True
    assert registry.list_versions(target) == registry.list_versions(DEFAULT)
    assert (target / "current").read_text(encoding="utf-8").strip() == DEFAULT_VERSION
    assert _files(target / DEFAULT_VERSION) == _files(DEFAULT / DEFAULT_VERSION)
    assert not [p.name for p in target.iterdir() if p.name.startswith(".")]  # no temporary dirs left


def test_seed_creates_a_missing_target(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "there"
    assert seed_model_dir(target, DEFAULT) is True
    assert registry.read_current(target) == DEFAULT_VERSION


def test_seeded_bundle_loads_and_verifies(tmp_path: Path) -> None:
    seed_model_dir(tmp_path, DEFAULT)
    forecaster = load_forecaster(tmp_path / DEFAULT_VERSION, providers="cpu")
    assert forecaster.version == DEFAULT_VERSION


@pytest.mark.parametrize("with_pointer", [True, False], ids=["with-pointer", "without-pointer"])
def test_seed_leaves_existing_registry_untouched(tmp_path: Path, with_pointer: bool) -> None:
    _trained_registry(tmp_path, with_pointer=with_pointer)
    before = _snapshot(tmp_path)
    assert seed_model_dir(tmp_path, DEFAULT) is False
    assert _snapshot(tmp_path) == before
    # Without a pointer nothing was ever promoted there: nothing is served rather than an unchosen version.
    assert registry.read_current(tmp_path) == (TRAINED_VERSION if with_pointer else None)


def test_seed_treats_dir_with_only_junk_as_empty(tmp_path: Path) -> None:
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "notes.txt").write_text("kept\n")
    (tmp_path / ".seed-crashed-abc").mkdir()
    (tmp_path / ".seed-crashed-abc" / "model.onnx").write_bytes(b"half a copy")
    (tmp_path / "20261123T000000Z-nomanifest").mkdir()  # a version dir needs manifest.json
    (tmp_path / "current").write_text("20200101T000000Z-gone\n")  # stale pointer to nothing

    assert seed_model_dir(tmp_path, DEFAULT) is True
    assert registry.list_versions(tmp_path) == [DEFAULT_VERSION]
    assert registry.read_current(tmp_path) == DEFAULT_VERSION
    assert (tmp_path / "notes.txt").read_text() == "kept\n"
    assert (tmp_path / ".seed-crashed-abc" / "model.onnx").read_bytes() == b"half a copy"
    assert (tmp_path / "lost+found").is_dir() and (tmp_path / "20261123T000000Z-nomanifest").is_dir()


def test_seed_into_the_default_itself_is_a_no_op(tmp_path: Path) -> None:
    default = tmp_path / "models"
    shutil.copytree(DEFAULT, default)
    before = _snapshot(default)
    assert seed_model_dir(default, default) is False
    assert _snapshot(default) == before


@pytest.mark.parametrize("layout", ["missing", "no-version"])
def test_seed_without_default_bundle_raises_clear_error(tmp_path: Path, layout: str) -> None:
    default = tmp_path / "image-models"
    if layout == "no-version":
        default.mkdir()
        (default / "README.md").write_text("no bundle here\n")
    target = tmp_path / "volume"
    with pytest.raises(FileNotFoundError, match="no default model bundle found in") as caught:
        seed_model_dir(target, default)
    assert str(default) in str(caught.value)
    assert registry.list_versions(target) == [] and not (target / "current").exists()


def test_seed_refuses_a_same_named_directory_without_manifest(tmp_path: Path) -> None:
    from closecast.registry import read_current

    default = Path(__file__).resolve().parents[1] / "models" / "default"
    target = tmp_path / "volume"
    (target / str(read_current(default))).mkdir(parents=True)
    with pytest.raises(FileExistsError, match=r"holds no manifest\.json; move it away"):
        seed_model_dir(target, default)
    assert not [p for p in target.iterdir() if p.name.startswith(".seed-")]
