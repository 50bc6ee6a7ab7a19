"""The model registry on disk: one immutable directory per version and a ``current`` pointer file.

    models/
      20261123T054712Z-3f2a9c1b/   manifest.json model.onnx model.pt scaler.json report.png
      20261124T101500Z-91be0d7e/   ...
      current                      one line: the version served

The pointer is a plain file replaced with ``os.replace`` (atomic on POSIX), so a reader sees the old or the
new version, never half of one; bundles are written to a hidden temporary directory and renamed into place.
Plain files over symlinks because they survive git, Docker volumes and every filesystem the same way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

CURRENT_POINTER = "current"
MANIFEST = "manifest.json"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_valid_version(name: str) -> bool:
    """A version is a plain directory name: no path separators, no leading dot, at most 128 characters."""
    return bool(_VERSION_RE.fullmatch(name))


def new_version_id(salt: bytes = b"", now: datetime | None = None) -> str:
    """Sortable id: UTC time to the second plus 8 hex digits, e.g. ``20261123T054712Z-3f2a9c1b``."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(salt + now.isoformat().encode() + os.urandom(8)).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{digest}"


def list_versions(model_dir: Path) -> list[str]:
    """Versions present in ``model_dir``, oldest first (ids sort by time)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and is_valid_version(p.name) and (p / MANIFEST).is_file()
    )


def read_current(model_dir: Path) -> str | None:
    """The version the pointer names; without a pointer, the newest version present (or None)."""
    pointer = model_dir / CURRENT_POINTER
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        return name or None
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def set_current(model_dir: Path, version: str) -> None:
    """Point ``current`` at ``version`` atomically (temporary file, fsync, ``os.replace``)."""
    if not is_valid_version(version) or not (model_dir / version / MANIFEST).is_file():
        raise ValueError(f"version {version!r} is not a bundle in {model_dir}")
    fd, tmp = tempfile.mkstemp(prefix=".current-", dir=model_dir)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; workers running as another user must read it
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, model_dir / CURRENT_POINTER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seed_model_dir(target: Path, default_dir: Path) -> bool:
    """First start of a fresh volume: copy the default registry into an empty ``target``.

    Returns True when it copied. A ``target`` that already holds a version is left untouched, so models
    trained through ``/train`` survive restarts. Each version is copied to a temporary directory and renamed,
    so a crash mid-copy never leaves a half bundle that looks complete.
    """
    target.mkdir(parents=True, exist_ok=True)
    if list_versions(target) or target.resolve() == default_dir.resolve():
        return False
    versions = list_versions(default_dir)
    if not versions:
        raise FileNotFoundError(f"no default model bundle found in {default_dir}")
    for version in versions:
        if (target / version).exists():
            raise FileExistsError(
                f"{target / version} exists but holds no {MANIFEST}; "
                "move it away so the default model can be copied"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".seed-{version}-", dir=target))
        try:
            shutil.copytree(default_dir / version, tmp, dirs_exist_ok=True)
            os.replace(tmp, target / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    set_current(target, read_current(default_dir) or versions[-1])
    return True
