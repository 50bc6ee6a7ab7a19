"""``/models``: the named models, each one's card and stored versions (reads; ``model_admin.py``
changes them).

``GET /models/current`` stays the default model's card, as before named models (``current`` is a reserved
name, so it never shadows a model).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.deps import ForecasterDep, ModelsDep, SeesAllDep, SeesNamesDep
from app.api.redact import public_data, public_metrics
from app.api.registry_schemas import (
    DataSummary,
    ModelCard,
    ModelHistory,
    ModelsOut,
    ModelSummary,
    ModelVersion,
    ModelVersions,
    PromotionOut,
    TrainingSummary,
)
from app.api.responses import errors
from app.inference.models import LoadedModels
from closecast import pointer_store, registry
from closecast.errors import ClosecastError, InputInvalid, model_name_invalid
from closecast.forecaster import Forecaster
from closecast.summary import data_summary, training_summary

router = APIRouter(tags=["models"])

ModelPath = Annotated[
    str,
    PathParam(
        max_length=64,
        # Documented, not enforced by pydantic: `checked_model` refuses a bad name with the rule in words.
        json_schema_extra={"pattern": registry.MODEL_NAME_PATTERN},
        description="a model's name (GET /models lists them)",
        examples=["default"],
    ),
]
_NOT_FOUND = errors(
    404, 422, words={404: "no such model; the message lists known ones", 422: "not a valid model name"}
)


def checked_model(models: LoadedModels, model: str) -> str:
    """A path's model name, valid (else 422) and in the registry (else 404 naming a few known ones)."""
    problem = registry.model_name_problem(model)
    if problem is not None:
        raise InputInvalid([model_name_invalid(("path", "model"), model, problem)])
    models.require(model)
    return model


Version = Annotated[
    str,
    PathParam(
        max_length=registry.VERSION_MAX_LENGTH,
        # Documented, not enforced by pydantic: the handler refuses a bad name with a clearer message.
        json_schema_extra={"pattern": registry.VERSION_PATTERN},
        description="a version listed by GET /models/{model}/versions",
    ),
]

# What a caller without the key sees of a version's training data: not the `source` (a job's name or upload
# file name says what someone trained on); with no key configured, nobody sees it.
PUBLIC_DATA = ("date_start", "date_end", "rows_used")


def _summary(
    models: LoadedModels, model: str, name: str, current: str | None, sees_names: bool
) -> ModelVersion:
    """A version's headline manifest fields (not verified: promotion verifies); with an object store, the
    store's manifest when this replica has not cached the version."""
    try:
        manifest = models.manifest(model, name)
    except ClosecastError as exc:
        return ModelVersion(version=name, current=name == current, problem=exc.message)
    data: dict[str, Any] = manifest.get("data", {})
    shown = ("source", "date_start", "date_end", "rows_used") if sees_names else PUBLIC_DATA
    metrics = manifest.get("metrics")
    return ModelVersion(
        version=name,
        current=name == current,
        created_at=manifest.get("created_at"),
        window=manifest["input"].get("window"),
        metrics=metrics if sees_names else public_metrics(metrics, data),
        data={k: data[k] for k in shown if k in data},
        **_made(manifest),
    )


def _made(manifest: dict[str, Any]) -> dict[str, Any]:
    """How a version was made: its training summary and data summary (no source names: anyone may see)."""
    return {
        "training": TrainingSummary(**training_summary(manifest)),
        "data_summary": DataSummary(**data_summary(manifest)),
    }


def _versions(models: LoadedModels, model: str, sees_all: bool, sees_names: bool) -> ModelVersions:
    current = models.pointers.current(model)  # the pointer files, or the database in scale-out mode
    served = models.loaded(model)
    names = list(reversed(models.versions(model)))  # the object store's, with one
    if not sees_all:  # only the versions that were ever current (history, pointer, served)
        public = {p.version for p in models.pointers.history(model)}
        public |= {v for v in (current, served.version if served else None) if v}
        names = [v for v in names if v in public]
    versions = [_summary(models, model, v, current, sees_names) for v in names]
    return ModelVersions(
        model=model, current=current, served=served.version if served else None, versions=versions
    )


def _model_summary(
    models: LoadedModels, model: str, versions: list[str], loaded: set[str], sees_names: bool
) -> ModelSummary:
    current = models.pointers.current(model)
    base = ModelSummary(
        model=model,
        default=model == models.default_name,
        current_version=current,
        loaded=model in loaded,
        versions=len(versions),
    )
    if current is None:
        return base
    try:
        manifest = models.manifest(model, current)
    except ClosecastError as exc:
        return base.model_copy(update={"problem": exc.message})
    metrics: dict[str, Any] = manifest.get("metrics", {})
    return base.model_copy(
        update={
            "created_at": manifest.get("created_at"),
            "window": manifest.get("input", {}).get("window"),
            "source": manifest.get("data", {}).get("source") if sees_names else None,
            "skill": metrics.get("test", {}).get("skill"),
            "beats_naive": metrics.get("beats_naive"),
            "skill_se": metrics.get("test", {}).get("skill_se"),
            "dm_pvalue": metrics.get("test", {}).get("dm_pvalue"),
            "coverage": manifest.get("intervals", {}).get("test_coverage"),
        }
    )


def _model_list(models: LoadedModels, sees_names: bool) -> ModelsOut:
    loaded = set(models.loaded_names())
    catalog = models.catalog()  # with an object store: the store's models and versions, one listing
    return ModelsOut(
        models=[
            _model_summary(models, name, versions, loaded, sees_names) for name, versions in catalog.items()
        ]
    )


def _card(model: str, forecaster: Forecaster, sees_names: bool) -> ModelCard:
    card = forecaster.card()
    if not sees_names:  # file and series names are for the key holder (app/api/redact.py)
        data = card.get("data", {})
        card["metrics"] = public_metrics(card.get("metrics", {}), data)
        card["intervals"] = public_metrics(card.get("intervals", {}), data)
        card["data"] = public_data(data)
    return ModelCard(model=model, **card, **_made(forecaster.manifest))


@router.get("/models/current", responses={503: {"description": "no verified model loaded yet"}})
async def current_model(model: ForecasterDep, models: ModelsDep, sees_names: SeesNamesDep) -> ModelCard:
    """The default model's card: version, window, test metrics against the naive forecast, data range."""
    return _card(models.default_name, model, sees_names)


@router.api_route("/models/current", methods=["DELETE"], include_in_schema=False)
async def current_is_not_a_model() -> None:
    """``/models/current`` is the default model's card (GET only), never a model to delete: 405 as for any
    method a path does not have, not the 401/422 ``DELETE /models/{model}`` would answer."""
    raise StarletteHTTPException(405, "Method Not Allowed")


@router.get("/models")
async def list_models(models: ModelsDep, sees_names: SeesNamesDep) -> ModelsOut:
    """Every model name with its current version's test skill, interval coverage and (with the key) data
    source."""
    return await anyio.to_thread.run_sync(_model_list, models, sees_names)


@router.get("/models/{model}", responses=_NOT_FOUND)
async def model_card(model: ModelPath, models: ModelsDep, sees_names: SeesNamesDep) -> ModelCard:
    """A model's card (loads it when it is not in memory): the version it serves, its metrics and data."""
    name = checked_model(models, model)
    return _card(name, await models.aforecaster_of(name), sees_names)


@router.get("/models/{model}/versions", responses=_NOT_FOUND)
async def list_versions(
    model: ModelPath, models: ModelsDep, sees_all: SeesAllDep, sees_names: SeesNamesDep
) -> ModelVersions:
    """A model's stored versions, newest first, with their test metrics; marks the one `current` names."""
    name = checked_model(models, model)
    return await anyio.to_thread.run_sync(_versions, models, name, sees_all, sees_names)


def _history(models: LoadedModels, model: str) -> ModelHistory:
    entries = []
    for p in pointer_store.promotions(models.pointers, model):
        job_id = None
        if p.by == "job":  # the job id is in the version's manifest (written by the job's training process)
            with suppress(ClosecastError):
                job_id = training_summary(models.manifest(model, p.version)).get("job_id")
        entries.append(
            PromotionOut.model_validate(
                {
                    "at": p.at,
                    "from": p.previous,
                    "to": p.version,
                    "reason": p.reason,
                    "by": p.by,
                    "job_id": job_id,
                }
            )
        )
    return ModelHistory(model=model, promotions=entries)


@router.get("/models/{model}/history", responses=_NOT_FOUND)
async def model_history(model: ModelPath, models: ModelsDep) -> ModelHistory:
    """A model's promotions, newest first: when, from which version to which, why, by a job or by hand."""
    name = checked_model(models, model)
    return await anyio.to_thread.run_sync(_history, models, name)
