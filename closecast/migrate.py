"""Bringing a registry root into the named layout at start: migrating the flat layout, seeding an empty
volume.

A registry written before named models keeps its versions, ``current`` and ``promotions.jsonl`` directly in
the root (a Docker volume of an earlier image). ``prepare_registry`` moves them under the default model's
name, ``root/<default>/``, once, in whichever process gets the lock first; every other worker starting at
the same time waits on the lock and then finds the work done.

Atomic for readers: everything is moved into a hidden staging directory ``root/.migrate-<name>/`` and that
directory is renamed to ``root/<name>`` in one step, so a server sees either the flat layout or the complete
model directory, never half of it. A crash part-way leaves the staging directory; the next start resumes it
(each move is a rename inside one filesystem, so nothing is copied and nothing can be half-written).

The lock is ``fcntl.flock`` on ``root/.registry.lock``: released by the kernel when its holder dies, so a
crashed migration never blocks the next start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from closecast import pointer_store, registry

log = logging.getLogger(__name__)

LOCK_FILE = ".registry.lock"
STAGING_PREFIX = ".migrate-"
_FLAT_FILES = (registry.CURRENT_POINTER, registry.PROMOTIONS)


class MigrationConflict(RuntimeError):
    """The root holds both a flat-layout registry and a model directory of the default model's name."""


@contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    """Hold the registry's start-up lock (blocking): one process migrates or seeds at a time."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def is_flat(root: Path) -> bool:
    """Whether ``root`` holds versions directly (the layout before named models)."""
    return bool(registry.list_versions(root))


def migrate_flat(root: Path, model: str) -> bool:
    """Move a flat-layout registry in ``root`` under ``root/<model>``; True when it moved anything.

    Call it under ``registry_lock``. Refuses (``MigrationConflict``) when ``root/<model>`` exists already:
    merging two histories of one name is a decision for a person, not for a server starting up.
    """
    staging = root / f"{STAGING_PREFIX}{model}"
    if not is_flat(root) and not staging.is_dir():
        return False
    target = pointer_store.FilePointers(root).model_dir_of(model)
    if target.exists():
        raise MigrationConflict(
            f"the model dir holds versions in the old flat layout and a model directory {model!r}; move "
            f"the flat versions into {model}/ (or elsewhere) by hand, then start again"
        )
    staging.mkdir(exist_ok=True)
    moved = registry.list_versions(root)
    for version in moved:
        os.rename(root / version, staging / version)
    for name in _FLAT_FILES:
        if (root / name).is_file():
            os.rename(root / name, staging / name)
    _fsync_dir(staging)
    os.rename(staging, target)  # the one step a reader can see
    _fsync_dir(root)
    log.warning(
        "migrated the model dir to the named layout: %d version(s) of the flat layout now belong to model %r",
        len(moved),
        model,
    )
    return True


def seed(root: Path, default_dir: Path, model: str) -> bool:
    """First start of an empty volume: copy the default model from ``default_dir`` into ``root/<model>``.

    ``default_dir`` may be in the named layout (``default_dir/<model>/``) or the flat one; True when it
    copied.
    """
    if registry.list_models(root):
        return False
    return seed_model_dir(pointer_store.FilePointers(root).model_dir_of(model), _source(default_dir, model))


def _source(default_dir: Path, model: str) -> Path:
    """The default model's directory in ``default_dir``: its own name, the flat layout, or its only model
    (the image bakes ``default/``; a deployment may call its default model otherwise)."""
    if (default_dir / model).is_dir() or registry.list_versions(default_dir):
        return default_dir / model if (default_dir / model).is_dir() else default_dir
    names = registry.list_models(default_dir)
    return default_dir / names[0] if len(names) == 1 else default_dir / model


def prepare_registry(root: Path, model: str, default_dir: Path | None = None) -> list[str]:
    """Under the lock: migrate a flat layout, seed an empty root, record a pointer without history.

    Returns what it did, in words, for the log. A read-only root that needs nothing is left alone (no lock
    file is created when the layout is already named).
    """
    if not _needs_work(root, model, default_dir):
        return []
    done: list[str] = []
    with registry_lock(root):
        if migrate_flat(root, model):
            done.append(f"migrated the flat layout to model {model!r}")
        if default_dir is not None and seed(root, default_dir, model):
            done.append(f"seeded model {model!r} from the default registry")
    return done


def _needs_work(root: Path, model: str, default_dir: Path | None) -> bool:
    if not root.is_dir():
        return True
    staged = any(p.name.startswith(STAGING_PREFIX) for p in root.iterdir())
    return staged or is_flat(root) or (default_dir is not None and not registry.list_models(root))


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the new name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_version_dir(root: Path, model: str, salt: bytes, default_model: str = "default") -> Path:
    """Where the training CLI writes a new version of ``model``: ``root/<model>/<new id>`` (the directory is
    created; a flat-layout ``root`` is migrated first, as the service does). ValueError for a bad name."""
    model_dir = pointer_store.FilePointers(root).model_dir_of(model)
    prepare_registry(root, default_model)
    model_dir.mkdir(parents=True, exist_ok=True)
    return model_dir / registry.new_version_id(salt)


def seed_model_dir(target: Path, default_dir: Path) -> bool:
    """First start of a fresh volume: copy the default registry into an empty ``target``.

    Returns True when it copied. A ``target`` that already holds a version is left untouched, so models
    trained through ``/train`` survive restarts. Each version is copied to a temporary directory and renamed,
    so a crash mid-copy never leaves a half bundle that looks complete.
    """
    target.mkdir(parents=True, exist_ok=True)
    if registry.list_versions(target) or target.resolve() == default_dir.resolve():
        return False
    versions = registry.list_versions(default_dir)
    if not versions:
        raise FileNotFoundError(f"no default model bundle found in {default_dir}")
    for version in versions:
        if (target / version).exists():
            raise FileExistsError(
                f"{target / version} exists but holds no {registry.MANIFEST}; "
                "move it away so the default model can be copied"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".seed-{version}-", dir=target))
        try:
            shutil.copytree(default_dir / version, tmp, dirs_exist_ok=True)
            os.replace(tmp, target / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    registry.set_current(
        target, registry.read_current(default_dir) or versions[-1], "seeded from the default registry"
    )
    return True
