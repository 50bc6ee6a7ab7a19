"""``POST /models/{model}/versions``: a bundle trained elsewhere, sent as a ``.tar.gz``, verified exactly as a
job's new bundle is (file hashes, sample replay, tensor contract: ``closecast/bundle.py``) and registered.

The archive holds one bundle's files, at its root or inside a single top-level folder: nothing else (no
links, no other folders, no file the manifest does not list). Its checked members are written as plain files
into a hidden staging folder inside the registry (so the rename into place is atomic), under a cap of
4x ``CLOSECAST_MAX_UPLOAD_BYTES`` unpacked; whatever happens, the staging folder is removed. The version gets
a new id (the registry's own, as a job's bundle does): the archive's folder name is not trusted as one.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from app.inference.models import LoadedModels
from app.jobs.promotion import make_current, register
from closecast import registry
from closecast.bundle import MANIFEST, load_forecaster, read_manifest
from closecast.errors import BundleInvalid, ClosecastError, InputInvalid, PayloadTooLarge, Problem

UNPACKED_FACTOR = 4  # an archive may unpack to at most this many times CLOSECAST_MAX_UPLOAD_BYTES
STAGING_PREFIX = ".upload-"  # hidden: never a model name (registry.MODEL_NAME_PATTERN)
FIRST_REASON = "uploaded through POST /models/{model}/versions: first version of a new model, made current"


def refused(message: str) -> InputInvalid:
    """A 422 naming the body and what is wrong with the archive."""
    return InputInvalid([Problem(("body",), message, "bundle_archive_invalid", None)])


def import_bundle(
    models: LoadedModels, model: str, body: bytes, max_bytes: int, max_models: int | None
) -> str:
    """Blocking: unpack, verify and register the bundle in ``body`` as a new version of ``model``; a new
    model's first version is made current. Returns the version. Raises ``PayloadTooLarge`` (413),
    ``InputInvalid`` (422) or ``TooManyModels``; nothing is left on disk when it raises."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"the archive is {len(body)} bytes but at most {max_bytes} are accepted "
            "(CLOSECAST_MAX_UPLOAD_BYTES)"
        )
    holder = models.holder_of(model)
    models.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=models.root))
    try:
        version = registry.new_version_id(body[:4096])
        bundle = staging / version
        _unpack(body, staging / "archive", bundle, UNPACKED_FACTOR * max_bytes)
        _check_listed(bundle)
        try:
            forecaster = load_forecaster(bundle, holder.providers, holder.ort_threads)
        except (BundleInvalid, OSError) as exc:
            raise refused(f"the bundle failed verification: {exc}") from None
        first = not holder.pointers.candidates(model) and not registry.list_versions(holder.model_dir)
        register(holder, bundle, max_models)
        if first:
            make_current(holder, forecaster, reason=FIRST_REASON.format(model=model))
        return version
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(body: bytes, raw: Path, bundle: Path, max_unpacked: int) -> None:
    """The archive's files into ``bundle`` (flat), refusing what is not one bundle's plain files."""
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            members, total = [], 0
            for member in tar:  # one header at a time: a bomb is stopped at the cap, not unpacked to find out
                if not (member.isfile() or member.isdir()):
                    raise refused(f"the archive holds {member.name!r}, which is not a plain file (a link?)")
                total += member.size if member.isfile() else 0
                if total > max_unpacked:
                    raise PayloadTooLarge(
                        f"the archive unpacks to more than {max_unpacked} bytes "
                        f"({UNPACKED_FACTOR}x CLOSECAST_MAX_UPLOAD_BYTES)"
                    )
                members.append(member)
            prefix = _single_prefix(members)
            for member in members:
                if member.isfile():
                    _write_member(tar, member, raw)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise refused(f"the body is not a readable .tar.gz archive ({exc})") from None
    source = raw / prefix if prefix else raw
    if not source.is_dir():
        raise refused("the archive holds no files")
    source.rename(bundle)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, raw: Path) -> None:
    """One checked member's bytes as a plain file (mode 0644, no owner, time or special bits from the
    archive): written by hand rather than by ``extractall``, whose ``filter`` argument Python 3.11 gained
    only in 3.11.4. The paths were refused before when absolute or climbing out (``_single_prefix``)."""
    target = raw.joinpath(*PurePosixPath(member.name).parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        raise refused(f"the archive's {member.name!r} cannot be read as a file")
    try:
        with source, open(target, "xb") as out:
            shutil.copyfileobj(source, out)
    except FileExistsError:
        raise refused(f"the archive holds {member.name!r} twice") from None


def _single_prefix(members: list[tarfile.TarInfo]) -> str:
    """The archive's single top-level folder, or "" when its files are at its root; refuses paths outside
    the archive and anything deeper than the bundle's own files."""
    parts = []
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise refused(f"the archive holds {member.name!r}, a path outside the bundle")
        clean = [p for p in path.parts if p != "."]
        if clean:
            parts.append((clean, member.isdir()))
    files = [p for p, is_dir in parts if not is_dir]
    if not files:
        raise refused("the archive holds no files")
    if all(len(p) == 1 for p in files):
        if any(len(p) > 1 or is_dir for p, is_dir in parts):
            raise refused("the archive mixes files at its root with folders; send one bundle's files")
        return ""
    tops = {p[0] for p, _ in parts}
    if len(tops) != 1 or any(len(p) != 2 for p in files) or any(len(p) > 1 for p, d in parts if d):
        raise refused("the archive must hold one bundle: its files at the root or in a single folder")
    return tops.pop()


def _check_listed(bundle: Path) -> None:
    """Every file of the bundle is its manifest or listed in it (missing ones: ``load_forecaster``)."""
    try:
        manifest = read_manifest(bundle)
    except ClosecastError as exc:
        raise refused(f"the bundle has no readable manifest: {exc}") from None
    listed = set(manifest.get("files") or {}) | {MANIFEST}
    extra = sorted(p.name for p in bundle.iterdir() if p.name not in listed)
    if extra:
        raise refused(f"the archive holds files its manifest does not list: {', '.join(extra)}")
