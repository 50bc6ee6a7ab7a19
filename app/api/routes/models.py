"""``/models``: the model serving now (its card), the stored versions, and making one of them current
(promotion and rollback)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi import Path as PathParam

from app.api.deps import ForecasterDep, HolderDep, SeesAllDep, TrainerDep
from app.api.responses import errors
from app.api.schemas import ModelCard, ModelList, ModelVersion, Promoted
from app.inference.holder import ModelHolder
from app.jobs.errors import VersionNotFound, storage_failed
from app.jobs.promotion import promote_version
from closecast import registry
from closecast.bundle import read_manifest
from closecast.errors import ClosecastError, InputInvalid, Problem

router = APIRouter(tags=["models"])

Version = Annotated[
    str,
    PathParam(
        max_length=registry.VERSION_MAX_LENGTH,
        # Documented, not enforced by pydantic: the handler refuses a bad name with a clearer message.
        json_schema_extra={"pattern": registry.VERSION_PATTERN},
        description="a version listed by GET /models",
    ),
]


def _summary(bundle_dir: Path, current: str | None, sees_all: bool) -> ModelVersion:
    """A version's headline manifest fields (not verified: promotion verifies)."""
    name = bundle_dir.name
    try:
        manifest = read_manifest(bundle_dir)
    except ClosecastError as exc:
        return ModelVersion(version=name, current=name == current, problem=exc.message)
    data: dict[str, Any] = manifest.get("data", {})
    shown = ("source", "date_start", "date_end", "rows_used") if sees_all else PUBLIC_DATA
    return ModelVersion(
        version=name,
        current=name == current,
        created_at=manifest.get("created_at"),
        window=manifest["input"].get("window"),
        metrics=manifest.get("metrics"),
        data={k: data[k] for k in shown if k in data},
    )


# What a caller without the key sees of a version's training data, when a key is set: not the `source`
# (a job's name or upload file name says what someone trained on).
PUBLIC_DATA = ("date_start", "date_end", "rows_used")


def _public_versions(model_dir: Path, current: str | None, served: str | None) -> set[str]:
    """The versions that were ever made current (the promotion history, the pointer, the one served)."""
    return {p.version for p in registry.promotion_history(model_dir)} | {v for v in (current, served) if v}


def _model_list(holder: ModelHolder, sees_all: bool) -> ModelList:
    current = holder.pointers.current(holder.model)
    served = holder.current.version if holder.current else None
    names = list(reversed(registry.list_versions(holder.model_dir)))
    if not sees_all:
        public = _public_versions(holder.model_dir, current, served)
        names = [v for v in names if v in public]
    versions = [_summary(holder.model_dir / v, current, sees_all) for v in names]
    return ModelList(current=current, served=served, versions=versions)


@router.get("/models/current", responses=errors(503, words={503: "no verified model loaded yet"}))
async def current_model(model: ForecasterDep, sees_all: SeesAllDep) -> ModelCard:
    """The served model: version, window, test metrics against the naive forecast, data range, provider."""
    card = model.card()
    if not sees_all:
        card["data"] = {k: v for k, v in card.get("data", {}).items() if k != "source"}
    return ModelCard(**card)


@router.get("/models")
async def list_models(holder: HolderDep, sees_all: SeesAllDep) -> ModelList:
    """Every stored version, newest first, with its test metrics; marks the one `current` names.

    With CLOSECAST_API_KEY set, a caller without the key sees only the versions that were ever current,
    without their data `source`."""
    return await anyio.to_thread.run_sync(_model_list, holder, sees_all)


@router.post(
    "/models/{version}/promote",
    dependencies=[TrainerDep],
    responses=errors(
        401,
        403,
        404,
        409,
        422,
        503,
        507,
        words={
            404: "no such version",
            409: "the bundle failed verification; nothing changed",
            422: "not a valid version name",
            503: "the `current` pointer could not be written (e.g. a read-only model dir)",
            507: "no space left in the model dir for the `current` pointer",
        },
    ),
)
async def promote(version: Version, holder: HolderDep) -> Promoted:
    """Make a stored version current (a rollback too), after loading and verifying it in full."""
    if not registry.is_valid_version(version):
        raise InputInvalid(
            [
                Problem(
                    ("path", "version"),
                    f"version is {version!r}; a version is a directory name of letters, digits, "
                    f"'.', '_' and '-' (GET /models lists them)",
                    "version_invalid",
                    version,
                )
            ]
        )
    if not (holder.model_dir / version / registry.MANIFEST).is_file():
        raise VersionNotFound(version)
    try:
        previous = await anyio.to_thread.run_sync(promote_version, holder, version)
    except OSError as exc:  # the pointer could not be written: a read-only or full volume
        raise storage_failed(holder.model_dir, exc, f"make {version} current") from exc
    except ValueError:  # set_current found no bundle: the version was removed after the check above
        raise VersionNotFound(version) from None
    return Promoted(version=version, previous=previous)
