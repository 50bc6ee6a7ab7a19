"""The ``current`` pointer and its promotion history: a bad pointer never strands the registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from closecast import pointer_store, registry
from tests.helpers import FIXTURE_BUNDLE

OLD, NEW, UNPROMOTED = "20990101T000000Z-00000old", "20990102T000000Z-00000new", "20990103T000000Z-0unchosen"


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    """Three versions: OLD promoted, then NEW promoted, then UNPROMOTED registered only (newest)."""
    model_dir = tmp_path / "default"  # FilePointers(tmp_path).model_dir_of("default")
    for version in (OLD, NEW, UNPROMOTED):
        shutil.copytree(FIXTURE_BUNDLE, model_dir / version)
    registry.set_current(model_dir, OLD, "first")
    registry.set_current(model_dir, NEW, "second")
    return model_dir


def test_set_current_appends_to_the_history(reg: Path) -> None:
    history = registry.promotion_history(reg)
    assert [(p.version, p.previous, p.reason) for p in history] == [
        (OLD, None, "first"),
        (NEW, OLD, "second"),
    ]
    assert (reg / "current").read_text() == NEW + "\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "missing"),
        (b"", "empty"),
        (b"\n  \n", "empty"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"hello world", "not a version name"),
        (b"../models", "not a version name"),
        (b"x" * 5000, "not a version name"),
        (b"20991231T000000Z-notthere", "not a bundle here"),
    ],
    ids=["missing", "empty", "blank", "binary", "text", "traversal", "huge", "absent-version"],
)
def test_bad_pointer_falls_back_to_the_last_promoted_version(
    reg: Path, content: bytes | None, problem: str
) -> None:
    pointer = reg / "current"
    pointer.unlink()
    if content is not None:
        pointer.write_bytes(content)
    read = registry.read_pointer(reg)
    assert read.version is None and problem in (read.problem or "")
    assert registry.read_current(reg) == NEW  # never UNPROMOTED, although it is the newest directory
    assert registry.current_candidates(reg) == [NEW, OLD]


def test_fallback_skips_promoted_versions_that_were_removed(reg: Path) -> None:
    (reg / "current").unlink()
    shutil.rmtree(reg / NEW)
    assert registry.read_current(reg) == OLD


def test_no_pointer_and_no_history_serves_nothing(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_BUNDLE, tmp_path / UNPROMOTED)
    assert registry.read_current(tmp_path) is None


def test_garbled_history_lines_are_skipped(reg: Path) -> None:
    with (reg / registry.PROMOTIONS).open("ab") as fh:
        fh.write(b'\xff not json\n{"version": 3}\n')
    (reg / "current").unlink()
    assert registry.read_current(reg) == NEW


def test_existing_pointer_is_recorded_once(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_BUNDLE, tmp_path / OLD)
    (tmp_path / "current").write_text(OLD + "\n")  # a registry from before the history
    assert registry.record_existing_pointer(tmp_path) is True
    assert registry.record_existing_pointer(tmp_path) is False
    lines = (tmp_path / registry.PROMOTIONS).read_text().splitlines()
    assert [json.loads(line)["version"] for line in lines] == [OLD]


def test_set_current_refuses_a_non_bundle_without_naming_paths(reg: Path) -> None:
    with pytest.raises(ValueError, match="not a bundle") as caught:
        registry.set_current(reg, "20991231T000000Z-notthere")
    assert str(reg) not in str(caught.value)
    assert registry.read_current(reg) == NEW


def test_file_pointers_follow_the_same_contract(reg: Path) -> None:
    store: pointer_store.PointerStore = pointer_store.FilePointers(reg.parent)
    store.promote("default", OLD, "rollback")
    assert store.current("default") == OLD
    assert [p.version for p in store.history("default")] == [OLD, NEW, OLD]
