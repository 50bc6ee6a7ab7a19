"""Removing versions and models from the registry: by hand (``DELETE``) and by the opt-in retention rule.

A version that is current, or that was ever promoted, is never removed: the promotion history is what a
worker falls back to when a pointer is unusable, and what a rollback goes back to. Whatever is removed is
first renamed to a hidden name in the same directory (atomic: a reader sees the version or nothing, never
half of it), then deleted.
"""

from __future__ import annotations

from pathlib import Path

from closecast import pointer_store, registry
from closecast.errors import RegistryConflict


def protected_versions(model_dir: Path, pointers: pointer_store.PointerStore | None = None) -> set[str]:
    """Versions that must stay: the one served and every one the promotion history records -- in the
    files, and in ``pointers`` when they live elsewhere (PostgreSQL records promotions in the database
    only, so the files alone would leave a version promoted there unprotected)."""
    kept = {item.version for item in registry.promotion_history(model_dir)}
    current = registry.read_current(model_dir)
    if pointers is not None and not isinstance(pointers, pointer_store.FilePointers):
        kept |= {item.version for item in pointers.history(model_dir.name)}
        kept |= {v for v in [pointers.current(model_dir.name)] if v}
    return kept | ({current} if current else set())


def delete_version(
    model_dir: Path, model: str, version: str, pointers: pointer_store.PointerStore | None = None
) -> None:
    """Remove one stored version; ``RegistryConflict`` when it is current or was ever promoted (in the
    files or in ``pointers``)."""
    check_deletable(model_dir, model, version, pointers)
    registry.remove_dir(model_dir / version)


def check_deletable(
    model_dir: Path, model: str, version: str, pointers: pointer_store.PointerStore | None = None
) -> None:
    """``RegistryConflict`` unless ``version`` may be deleted: never the current one, nor one that was ever
    promoted (an object store's versions are checked against the database's pointers this way, then
    removed from the store)."""
    current = pointers.current(model) if pointers is not None else registry.read_current(model_dir)
    if version == current:
        raise RegistryConflict(
            f"version {version!r} is the current version of model {model!r}; promote another version first "
            f"(POST /models/{model}/versions/{{version}}/promote), then delete this one"
        )
    if version in protected_versions(model_dir, pointers):
        raise RegistryConflict(
            f"version {version!r} of model {model!r} is in its promotion history, which rollbacks and the "
            "fallback of an unusable pointer rely on; only never-promoted versions can be deleted"
        )


def delete_model(root: Path, model: str, default_model: str) -> None:
    """Remove a whole model (every version and its history); never the default model."""
    check_model_deletable(model, default_model)
    registry.remove_dir(pointer_store.FilePointers(root).model_dir_of(model))


def check_model_deletable(model: str, default_model: str) -> None:
    """``RegistryConflict`` for the default model, which is never deleted."""
    if model == default_model:
        raise RegistryConflict(
            f"model {model!r} is the default model (CLOSECAST_DEFAULT_MODEL), which requests without a "
            "`model` use; it cannot be deleted"
        )


def prune_versions(
    model_dir: Path, keep: int, pointers: pointer_store.PointerStore | None = None
) -> list[str]:
    """Retention (``CLOSECAST_KEEP_VERSIONS``): of the never-promoted versions, keep the newest ``keep``.

    Returns the versions removed, oldest first.
    """
    doomed = beyond_retention(
        registry.list_versions(model_dir), keep, protected_versions(model_dir, pointers)
    )
    for version in doomed:
        registry.remove_dir(model_dir / version)
    return doomed


def beyond_retention(versions: list[str], keep: int, protected: set[str]) -> list[str]:
    """Of ``versions`` (oldest first), the never-promoted ones beyond the newest ``keep`` of them: what
    retention removes (from the model dir, or from an object store)."""
    unpromoted = [v for v in versions if v not in protected]
    return unpromoted[: max(len(unpromoted) - keep, 0)]
