"""``/models``: the model serving now (its card), the stored versions, and making one of them current
(promotion and rollback)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi import Path as PathParam

from app.api.deps import ForecasterDep, HolderDep, TrainerDep
from app.api.schemas import ModelCard, ModelList, ModelVersion, Promoted
from app.inference.holder import ModelHolder
from app.jobs.errors import VersionNotFound, storage_failed
from app.jobs.promotion import promote_version
from closecast import registry
from closecast.bundle import read_manifest
from closecast.errors import ClosecastError, InputInvalid, Problem

router = APIRouter(tags=["models"])

Version = Annotated[str, PathParam(max_length=200, description="a version listed by GET /models")]


def _summary(bundle_dir: Path, current: str | None) -> ModelVersion:
    """A version's headline manifest fields (not verified: promotion verifies)."""
    name = bundle_dir.name
    try:
        manifest = read_manifest(bundle_dir)
    except ClosecastError as exc:
        return ModelVersion(version=name, current=name == current, problem=exc.message)
    data: dict[str, Any] = manifest.get("data", {})
    return ModelVersion(
        version=name,
        current=name == current,
        created_at=manifest.get("created_at"),
        window=manifest["input"].get("window"),
        metrics=manifest.get("metrics"),
        data={k: data[k] for k in ("source", "date_start", "date_end", "rows_used") if k in data},
    )


def _model_list(holder: ModelHolder) -> ModelList:
    current = holder.pointers.current(holder.model)
    served = holder.current
    versions = [
        _summary(holder.model_dir / v, current) for v in reversed(registry.list_versions(holder.model_dir))
    ]
    return ModelList(current=current, served=served.version if served else None, versions=versions)


@router.get("/models/current", responses={503: {"description": "no verified model loaded yet"}})
async def current_model(model: ForecasterDep) -> ModelCard:
    """The served model: version, window, test metrics against the naive forecast, data range, provider."""
    return ModelCard(**model.card())


@router.get("/models")
async def list_models(holder: HolderDep) -> ModelList:
    """Every stored version, newest first, with its test metrics; marks the one `current` names."""
    return await anyio.to_thread.run_sync(_model_list, holder)


@router.post(
    "/models/{version}/promote",
    dependencies=[TrainerDep],
    responses={
        401: {"description": "the bearer key is missing or wrong"},
        403: {"description": "no CLOSECAST_API_KEY is configured: training and promotion are off"},
        404: {"description": "no such version"},
        409: {"description": "the bundle failed verification; nothing changed"},
        422: {"description": "not a valid version name"},
        503: {"description": "the `current` pointer could not be written (e.g. a read-only model dir)"},
        507: {"description": "no space left in the model dir for the `current` pointer"},
    },
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
