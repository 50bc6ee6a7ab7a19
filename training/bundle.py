"""Write a model bundle atomically: everything goes to a temporary directory renamed into place.

A reader (the service, another job) sees either no bundle or a complete one whose ``manifest.json`` lists
the sha256 of every other file. The format is documented in ``models/README.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.inference.bundle import FORMAT_VERSION, sha256_file  # the reader's own definitions: one format

__all__ = ["FORMAT_VERSION", "check_destination", "sha256_file", "write_bundle"]


def check_destination(out: Path, force: bool) -> None:
    """Refuse an existing non-empty directory unless ``force``: bundles are immutable."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(
            f"{out} exists and is not empty; bundles are immutable: choose a new --out or pass --force"
        )


def write_bundle(out: Path, fill: Callable[[Path], dict[str, Any]], force: bool = False) -> dict[str, Any]:
    """Let ``fill(tmpdir)`` write the files and return the manifest; hash, write it, rename into place.

    Any exception leaves nothing behind at ``out`` (and the temporary directory is removed).
    """
    check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700: a service running as another user could not read it
        manifest = fill(tmp)
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in tmp.iterdir():  # durable before visible
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():  # --force: keep the old bundle aside until the new one is in place
            trash = out.parent / f".trash-{out.name}-{os.getpid()}"
            os.replace(out, trash)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(trash, out)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
