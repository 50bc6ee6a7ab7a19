"""Changing the registry through ``/models`` (keyed): promotion and rollback of a model's version, deleting a
version or a whole model. ``POST /models/{version}/promote`` is the alias, from before named models, for the
default model.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.bundle_upload import import_bundle
from app.api.deps import ModelsDep, SettingsDep, TrainerDep
from app.api.registry_schemas import Deleted, Promoted, VersionUploaded
from app.api.responses import errors
from app.api.routes.models import ModelPath, Version, checked_model
from app.inference.models import LoadedModels
from app.jobs.errors import VersionNotFound, storage_failed
from app.jobs.promotion import promote_version, promotion_lock
from closecast import registry, retention
from closecast.errors import InputInvalid, Problem, model_name_invalid

router = APIRouter(tags=["models"], dependencies=[TrainerDep])

_WORDS = {
    404: "no such model or version",
    422: "not a valid model or version name",
    503: "the registry could not be written (e.g. a read-only model dir)",
    507: "no space left in the model dir",
}
_PROMOTE = errors(
    401,
    403,
    404,
    409,
    412,
    422,
    503,
    507,
    words={**_WORDS, 409: "the bundle failed verification; nothing changed"},
)
_DELETE = errors(
    401,
    403,
    404,
    409,
    422,
    503,
    507,
    words={**_WORDS, 409: "the version is current or was promoted, or the model is the default one"},
)


def _checked_version(models: LoadedModels, model: str, version: str) -> str:
    if not registry.is_valid_version(version):
        raise InputInvalid(
            [
                Problem(
                    ("path", "version"),
                    f"version is {version!r}; a version is a directory name of letters, digits, "
                    f"'.', '_' and '-' (GET /models/{model}/versions lists them)",
                    "version_invalid",
                    version,
                )
            ]
        )
    if not models.has_version(model, version):  # with an object store: the store's, not this cache's
        raise VersionNotFound(version, model)
    return version


IfMatch = Annotated[
    str | None,
    Header(
        description='the version you believe current, as an ETag (`"20261207T101500Z-1a2b3c4d"`; unquoted '
        "is taken too): the promotion happens only while it is, else 412 with `current`; `*`: any",
    ),
]


def believed_current(if_match: str | None) -> str | None:
    """The version an ``If-Match`` header names (quotes and a weak ``W/`` taken off); None for ``*`` or no
    header. A list of several versions, or a value that is no version name, is a 422 naming the header."""
    if if_match is None or if_match.strip() == "*":
        return None
    sent = if_match.strip().removeprefix("W/").strip('"')
    if not registry.is_valid_version(sent):
        problem = Problem(
            ("header", "if-match"),
            f"If-Match is {if_match!r}; send one version in quotes (`current` of GET "
            '/models/{model}/versions), e.g. If-Match: "20261207T101500Z-1a2b3c4d", or * for any',
            "if_match_invalid",
            if_match,
        )
        raise InputInvalid([problem])
    return sent


async def _promote(
    models: LoadedModels, model: str, version: str, if_match: str | None, response: Response
) -> Promoted:
    holder = models.holder_of(model)
    believed = believed_current(if_match)
    try:
        previous = await anyio.to_thread.run_sync(promote_version, holder, version, believed)
    except OSError as exc:  # the pointer could not be written: a read-only or full volume
        raise storage_failed(holder.model_dir, exc, f"make {version} current") from exc
    except ValueError:  # set_current found no bundle: the version was removed after the check
        raise VersionNotFound(version, model) from None
    response.headers["ETag"] = f'"{version}"'  # what to send in If-Match next
    return Promoted(model=model, version=version, previous=previous)


@router.post("/models/{model}/versions/{version}/promote", responses=_PROMOTE)
async def promote(
    model: ModelPath, version: Version, models: ModelsDep, response: Response, if_match: IfMatch = None
) -> Promoted:
    """Make a stored version of a model current (a rollback too), after loading and verifying it in full;
    the other models are untouched. With `If-Match`, only while that version is current (else 412)."""
    name = checked_model(models, model)
    return await _promote(models, name, _checked_version(models, name, version), if_match, response)


@router.post("/models/{version}/promote", responses=_PROMOTE)
async def promote_default(
    version: Version, models: ModelsDep, response: Response, if_match: IfMatch = None
) -> Promoted:
    """The default model's promotion (the path from before named models; same as
    `/models/{default}/versions/{version}/promote`)."""
    name = models.default_name
    return await _promote(models, name, _checked_version(models, name, version), if_match, response)


def _delete_version(models: LoadedModels, model: str, version: str) -> None:
    # a promotion of this very version, in any worker or replica, cannot slip in between check and removal
    with promotion_lock(models.pointers, models.root), models.pointers.model_lock(model):
        if models.bundles is None:
            retention.delete_version(models.model_dir(model), model, version, models.pointers)
            return
        # an object store: checked against the database's pointer and history, removed from the store
        # (every replica stops listing it) and this cache; other caches drop it when they next list
        retention.check_deletable(models.model_dir(model), model, version, models.pointers)
        models.bundles.delete_version(model, version)


def _delete_model(models: LoadedModels, model: str, default_model: str) -> None:
    # as a version: no promotion of this model, in any worker or replica, lands while it is removed
    with promotion_lock(models.pointers, models.root), models.pointers.model_lock(model):
        retention.check_model_deletable(model, default_model)
        if models.bundles is None:  # the model's directory (on the volume every replica shares)
            retention.delete_model(models.root, model, default_model)
        # a database: its pointer and history, and with a store the store's versions and pointer copy
        forget = getattr(models.pointers, "delete_model", None)
        if forget is not None:
            forget(model)
    models.forget(model)


GZIP_TYPES = ("application/gzip", "application/x-gzip")
_UPLOAD = errors(
    401,
    403,
    409,
    413,
    415,
    422,
    503,
    507,
    words={
        **_WORDS,
        409: "CLOSECAST_MAX_MODELS model names exist already",
        413: "over CLOSECAST_MAX_UPLOAD_BYTES, or over 4x that unpacked",
        415: "the body is not sent as application/gzip",
        422: "not a valid model name, or the archive is not one valid bundle (the message says why)",
    },
)


@router.post(
    "/models/{model}/versions",
    status_code=201,
    responses=_UPLOAD,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "a .tar.gz of one bundle's files, at its root or in a single top-level folder",
        }
    },
)
async def upload_version(
    model: ModelPath, request: Request, models: ModelsDep, settings: SettingsDep
) -> VersionUploaded:
    """Register a bundle trained elsewhere (the body is its `.tar.gz`), verified as a job's bundle is; a new
    model name is created with it as its current version, an existing one gets it unpromoted."""
    problem = registry.model_name_problem(model)
    if problem is not None:
        raise InputInvalid([model_name_invalid(("path", "model"), model, problem)])
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in GZIP_TYPES:
        raise StarletteHTTPException(
            415, f"Content-Type is {kind or 'missing'!r}; send the .tar.gz as application/gzip"
        )
    body = await request.body()
    limit, most = settings.max_upload_bytes, settings.max_models
    try:
        version = await anyio.to_thread.run_sync(import_bundle, models, model, body, limit, most)
    except OSError as exc:
        raise storage_failed(models.root, exc, f"store a new version of {model}") from exc
    return VersionUploaded(model=model, version=version)


@router.delete("/models/{model}/versions/{version}", responses=_DELETE)
async def delete_version(model: ModelPath, version: Version, models: ModelsDep) -> Deleted:
    """Delete a never-promoted version (409 for the current one and any in the promotion history)."""
    name = checked_model(models, model)
    _checked_version(models, name, version)
    try:
        await anyio.to_thread.run_sync(_delete_version, models, name, version)
    except OSError as exc:
        raise storage_failed(models.model_dir(name), exc, f"delete {version}") from exc
    return Deleted(model=name, version=version)


@router.delete("/models/{model}", responses=_DELETE)
async def delete_model(model: ModelPath, models: ModelsDep, settings: SettingsDep) -> Deleted:
    """Delete a model with all its versions and history (never the default model)."""
    name = checked_model(models, model)
    try:
        await anyio.to_thread.run_sync(_delete_model, models, name, settings.default_model)
    except OSError as exc:
        raise storage_failed(models.root, exc, f"delete model {name}") from exc
    return Deleted(model=name)
