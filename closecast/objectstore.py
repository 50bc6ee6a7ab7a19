"""Model bundles in an object store, whatever the store (S3, MinIO, Ceph, R2): the layout, the upload, the
download into a local cache, the pointer copy and the seeding of an empty store.

    <prefix>/<model>/<version>/<file>        every file of a bundle; ``manifest.json`` is written LAST
    <prefix>/<model>/current                 copy of the database's pointer (one line: the version)
    <prefix>/<model>/promotions.jsonl        copy of the database's promotion history, as the file registry's
    <prefix>/.jobs/<job id>/<file>           a queued job's data, from the replica that took it to the worker

With a store, the store (and the database's pointers) ARE the registry: listings, the model count and
deletions go to the store, and the local directory is only a cache of present versions. A version enters a
cache only once the store has it (``fetch`` downloads it; a worker's new version is uploaded before it is
renamed into its cache, ``publish``), so a cached version the store lacks was deleted through another
process and is dropped from the cache when this one next lists the store (``sync``).

A version is present once its ``manifest.json`` is: the manifest holds the sha256 of every other file, so a
bundle is never half there for a reader (a crashed upload leaves files without a manifest, which nobody
reads, and the next upload of that version writes them again). Versions are immutable, so the local copy of
a present version is a cache that never goes stale: it is downloaded once into a hidden temporary
directory, verified against the manifest (``closecast.bundle.verify_files``) and renamed into
``<root>/<model>/<version>``.

The store itself is a five-call protocol (``ObjectStore``): ``app/storage/s3.py`` implements it with boto3;
this module needs nothing but the standard library and the core.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from closecast import pointer_store, registry
from closecast.bundle import parse_manifest, read_manifest, verify_files
from closecast.errors import BundleInvalid
from closecast.registry import MANIFEST, Promotion

log = logging.getLogger(__name__)

JOBS_PREFIX = ".jobs"  # a model name never starts with a dot: job data cannot clash with a model
FETCH_PREFIX = ".fetch-"
DOWNLOADS_AT_ONCE = 8


class ObjectStoreError(OSError):
    """The object store could not be used (unreachable, refused, failed); the message names no secret."""


class ObjectStore(Protocol):
    """Keys are relative to the store's prefix, ``/``-separated. Every call raises ``ObjectStoreError``."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""

    def put(self, key: str, data: bytes) -> None: ...

    def download(self, key: str, path: Path) -> bool:
        """Write the object to ``path``; False (nothing written) when there is no such key."""

    def upload(self, key: str, path: Path) -> None: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted."""

    def delete(self, keys: list[str]) -> None: ...


def _key(*parts: str) -> str:
    return "/".join(parts)


class StoreRegistry:
    """The registry of one store, cached under the local registry ``root`` (``CLOSECAST_MODEL_DIR``)."""

    def __init__(self, store: ObjectStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.files = pointer_store.FilePointers(root)

    # --- what the store holds ----------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Model names with at least one present version, or a pointer copy, sorted."""
        return sorted(self.catalog())

    def catalog(self) -> dict[str, list[str]]:
        """Every model the store holds (a present version or a pointer copy) with its present versions,
        oldest first: one listing of the whole store."""
        found: dict[str, list[str]] = {}
        for key in self.store.keys(""):
            parts = key.split("/")
            if len(parts) < 2 or not registry.is_valid_model_name(parts[0]):
                continue
            if len(parts) == 3 and parts[2] == MANIFEST and registry.is_valid_version(parts[1]):
                found.setdefault(parts[0], []).append(parts[1])
            elif len(parts) == 2 and parts[1] == registry.CURRENT_POINTER:
                found.setdefault(parts[0], [])
        return {model: sorted(versions) for model, versions in found.items()}

    def versions(self, model: str) -> list[str]:
        """Present versions of ``model`` (those whose manifest is there), oldest first."""
        found = []
        for key in self.store.keys(_key(model, "")):
            parts = key.split("/")
            if len(parts) == 3 and parts[2] == MANIFEST and registry.is_valid_version(parts[1]):
                found.append(parts[1])
        return sorted(found)

    def has(self, model: str, version: str) -> bool:
        """Whether ``version`` of ``model`` is in the local cache or present in the store."""
        if registry.is_bundle(self.files.model_dir_of(model), version):
            return True
        return self.present(model, version)

    def present(self, model: str, version: str) -> bool:
        """Whether the store holds ``version`` of ``model`` (its manifest is there), whatever the cache."""
        key = _key(model, version, MANIFEST)
        return registry.is_valid_version(version) and key in self.store.keys(key)

    def manifest(self, model: str, version: str) -> dict[str, Any]:
        """A version's manifest: the cached bundle's, else the store's (one small GET: the bundle itself is
        not downloaded to be listed). ``BundleInvalid`` when neither has it."""
        if registry.is_bundle(self.files.model_dir_of(model), version):
            return read_manifest(self.files.model_dir_of(model) / version)
        raw = self.store.get(_key(model, version, MANIFEST)) if registry.is_valid_version(version) else None
        if raw is None:
            raise BundleInvalid(f"version {version[:80]!r} of model {model!r} is not in the object store")
        return parse_manifest(raw, f"{version}/{MANIFEST}")

    # --- bundles -----------------------------------------------------------------------------------------

    def publish(self, model: str, version: str, bundle: Path | None = None) -> bool:
        """Upload the bundle ``version`` (the cached one, or the directory ``bundle`` named as the version)
        unless the store has it: verified first, every file, then the manifest. True when it uploaded."""
        if self.present(model, version):
            return False
        _publish_from(self.store, model, bundle or self.files.model_dir_of(model) / version)
        log.info("uploaded model %s version %s to the object store", model, version)
        return True

    def fetch(self, model: str, version: str) -> bool:
        """Make ``version`` of ``model`` a bundle in the local cache: downloaded, verified, renamed in.

        True when it downloaded; False when the cache had it. ``BundleInvalid`` when the store lacks it or a
        file does not match the manifest (nothing is left in the cache)."""
        model_dir = self.files.model_dir_of(model)
        if not registry.is_valid_version(version):
            raise BundleInvalid(f"version {version[:80]!r} is not a version name")
        if registry.is_bundle(model_dir, version):
            return False
        raw = self.store.get(_key(model, version, MANIFEST))
        if raw is None:
            raise BundleInvalid(f"version {version!r} of model {model!r} is not in the object store")
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{FETCH_PREFIX}{version}-", dir=model_dir))
        try:
            (tmp / MANIFEST).write_bytes(raw)
            manifest = read_manifest(tmp)
            self._download_files(model, version, list(manifest["files"]), tmp)
            verify_files(tmp, manifest)
            tmp.chmod(0o755)  # mkdtemp makes it 0700; other users (a worker) read the cache too
            _rename_into_place(tmp, model_dir / version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("downloaded model %s version %s from the object store", model, version)
        return True

    def _download_files(self, model: str, version: str, names: list[str], tmp: Path) -> None:
        """Download a bundle's files side by side (a request's latency, not its size, is what a small bundle
        costs: one round trip for all of them rather than one each)."""
        for name in names:
            if "/" in name or name.startswith(".") or name == MANIFEST:
                raise BundleInvalid(f"{version}: the manifest names {name[:80]!r}, not a bundle file")
        with ThreadPoolExecutor(max_workers=DOWNLOADS_AT_ONCE) as pool:
            found = pool.map(lambda n: self.store.download(_key(model, version, n), tmp / n), names)
            missing = [name for name, there in zip(names, found, strict=True) if not there]
        if missing:
            raise BundleInvalid(f"{version}/{missing[0]} is listed in its manifest but not in the store")

    # --- deleting, and keeping the cache in step ---------------------------------------------------------

    def delete_version(self, model: str, version: str) -> None:
        """Remove ``version`` from the store (its manifest first: from then on no reader sees it, and a
        crash leaves only unlisted files), then from this cache. The caller checks it may go."""
        keys = self.store.keys(_key(model, version, ""))
        self._delete_manifests_first(keys)
        registry.remove_dir(self.files.model_dir_of(model) / version, missing_ok=True)

    def delete_model(self, model: str) -> None:
        """Remove every version of ``model`` and its pointer copy from the store, then its cache."""
        self._delete_manifests_first(self.store.keys(_key(model, "")))
        registry.remove_dir(self.files.model_dir_of(model), missing_ok=True)

    def _delete_manifests_first(self, keys: list[str]) -> None:
        marks = [k for k in keys if k.endswith("/" + MANIFEST) or k.endswith("/" + registry.CURRENT_POINTER)]
        if marks:
            self.store.delete(marks)
        if rest := [k for k in keys if k not in marks]:
            self.store.delete(rest)

    def sync(self, keep: Iterable[tuple[str, str]] = ()) -> dict[str, list[str]]:
        """``catalog()``, after which this cache holds nothing the store lacks: cached versions (and whole
        models) deleted through another process are dropped, except the (model, version) pairs ``keep``
        (what this process serves from memory). The cache is read BEFORE the store is listed: a version
        enters a cache only once it is in the store, so one cached then and absent now was deleted, never
        one still being uploaded."""
        cached = {
            m: registry.list_versions(self.files.model_dir_of(m)) for m in registry.list_models(self.root)
        }
        stored = self.catalog()
        kept = set(keep)
        for model, versions in cached.items():
            present = set(stored.get(model, ()))
            for version in versions:
                if version not in present and (model, version) not in kept:
                    log.info(
                        "dropping model %s version %s from the cache: the store no longer has it",
                        model,
                        version,
                    )
                    registry.remove_dir(self.files.model_dir_of(model) / version, missing_ok=True)
        return stored

    # --- the pointer copy --------------------------------------------------------------------------------

    def read_pointer(self, model: str) -> tuple[str | None, list[Promotion]]:
        """The store's copy of the pointer and history of ``model`` (None and [] when it has none)."""
        raw = self.store.get(_key(model, registry.PROMOTIONS))
        history = registry.parse_promotions(raw) if raw is not None else []
        pointed = (self.store.get(_key(model, registry.CURRENT_POINTER)) or b"").decode(errors="replace")
        version = pointed.strip() if registry.is_valid_version(pointed.strip()) else None
        return version, history

    def write_pointer(self, model: str, version: str, history: list[Promotion]) -> None:
        """Replace the copy: the history first, then the pointer (each PUT replaces its object whole)."""
        self.store.put(_key(model, registry.PROMOTIONS), registry.promotions_text(history).encode())
        self.store.put(_key(model, registry.CURRENT_POINTER), (version + "\n").encode())


def _rename_into_place(tmp: Path, target: Path) -> None:
    """Rename a verified download into the cache; another process that got there first has the same bytes."""
    try:
        os.rename(tmp, target)
    except OSError:
        if not registry.is_bundle(target.parent, target.name):
            raise


class FileMirror:
    """The pointer copy on the shared volume (scale-out without a store): the registry's own files."""

    def __init__(self, root: Path) -> None:
        self.files = pointer_store.FilePointers(root)

    def models(self) -> list[str]:
        return registry.list_models(self.files.root)

    def read_pointer(self, model: str) -> tuple[str | None, list[Promotion]]:
        model_dir = self.files.model_dir_of(model)
        return registry.read_pointer(model_dir).version, registry.promotion_history(model_dir)

    def write_pointer(self, model: str, version: str, history: list[Promotion]) -> None:
        registry.mirror_pointer(self.files.model_dir_of(model), version, history)


class PointerMirror(Protocol):
    """Where the copy of the database's pointers lives: ``StoreRegistry`` or ``FileMirror``."""

    def models(self) -> list[str]: ...

    def read_pointer(self, model: str) -> tuple[str | None, list[Promotion]]: ...

    def write_pointer(self, model: str, version: str, history: list[Promotion]) -> None: ...


# --- seeding -----------------------------------------------------------------------------------------------


def seed_store(target: StoreRegistry, source: Path, default_model: str) -> list[str]:
    """An empty store (no model at all) takes every model of the registry ``source``: all its versions and
    its pointer and history. Returns the models seeded (none when the store holds any model).

    Safe from several processes at once: they upload the same bytes, each version's manifest last. A
    ``source`` in the flat layout (versions directly in it) is the default model's directory.
    """
    if target.models():
        return []
    flat = bool(registry.list_versions(source))
    models = [default_model] if flat else registry.list_models(source)
    if not models:
        raise FileNotFoundError(f"no model bundle found in {source} to seed the object store with")
    for model in models:
        model_dir = source if flat else source / model
        for version in registry.list_versions(model_dir):
            _publish_from(target.store, model, model_dir / version)
        pointed = registry.read_current(model_dir)
        if pointed is None:
            continue
        history = registry.promotion_history(model_dir) or [
            Promotion(pointed, datetime.now(UTC).isoformat(timespec="seconds"), None, "seeded")
        ]
        target.write_pointer(model, pointed, history)
        log.info("seeded the object store with model %s (%s)", model, pointed)
    return models


def _publish_from(store: ObjectStore, model: str, bundle: Path) -> None:
    """Upload one verified bundle directory as ``model``/<its name>, manifest last."""
    verify_files(bundle, read_manifest(bundle))
    for path in sorted(bundle.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            store.upload(_key(model, bundle.name, path.name), path)
    store.upload(_key(model, bundle.name, MANIFEST), bundle / MANIFEST)
