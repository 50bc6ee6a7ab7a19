"""Dependencies of the routes, as ``Annotated`` aliases (``def handler(model: ForecasterDep)``)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.protect import bearer_matches
from app.config import Settings
from app.inference.holder import ModelHolder
from app.inference.models import LoadedModels
from app.jobs.errors import AuthFailed, JobsUnavailable, TrainingDisabled
from app.jobs.runner import JobRunner
from app.metrics import Metrics
from closecast.errors import ModelNotReady
from closecast.forecaster import Forecaster


async def get_settings_of_app(request: Request) -> Settings:
    """The settings this app was created with (not the environment: tests pass their own)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_of_app)]


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_models(request: Request) -> LoadedModels:
    models: LoadedModels = request.app.state.models
    return models


async def forecasters_of(
    request: Request, names: Sequence[str | None]
) -> tuple[list[str], dict[str, Forecaster]]:
    """The one place a request's model names become models: ``None`` is the default model; each model is
    read once (loaded first when cold) and kept for the whole request. Raises ``ModelNotFound`` (404)."""
    models: LoadedModels = request.app.state.models  # no Depends: the solver costs more than the lookup
    resolved = [name or models.default_name for name in names]
    return resolved, {name: await models.aforecaster_of(name) for name in dict.fromkeys(resolved)}


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_forecaster(holder: Annotated[ModelHolder, Depends(get_holder)]) -> Forecaster:
    """The model serving now, read once so the whole request uses it even if a swap happens meanwhile."""
    forecaster = holder.current
    if forecaster is None:
        raise ModelNotReady()
    return forecaster


_bearer = HTTPBearer(auto_error=False, description="the key of CLOSECAST_API_KEY")


async def require_trainer(
    settings: Annotated[Settings, Depends(get_settings_of_app)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Training and promotion need ``Authorization: Bearer <CLOSECAST_API_KEY>``; with no key they are off."""
    if settings.api_key is None:
        raise TrainingDisabled()
    sent = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(sent.encode(), settings.api_key.get_secret_value().encode()):
        raise AuthFailed()


async def caller_sees_all(request: Request, settings: SettingsDep) -> bool:
    """Whether the caller may read everything on ``/models``: no key is configured (an open deployment), or
    the request carries it. Read from the header itself, not ``HTTPBearer``: the route stays open to all
    (OpenAPI must not declare a key it does not demand), it only shows the others less."""
    if settings.api_key is None:
        return True
    return bearer_matches(settings.api_key, request.headers.get("authorization"))


async def caller_sees_names(request: Request, settings: SettingsDep) -> bool:
    """Whether the caller may see training file and series names: only with the key (with no key configured,
    nobody: an open deployment shows counts and date ranges, ``app/api/redact.py``)."""
    key = settings.api_key
    return key is not None and bearer_matches(key, request.headers.get("authorization"))


async def get_runner(request: Request) -> JobRunner:
    """This worker's job runner, once it can take jobs (else 503 with the reason)."""
    runner: JobRunner | None = getattr(request.app.state, "jobs", None)
    if runner is None:
        raise JobsUnavailable("retraining is not set up in this app (no job runner)")
    runner.check_available()
    return runner


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelsDep = Annotated[LoadedModels, Depends(get_models)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ForecasterDep = Annotated[Forecaster, Depends(get_forecaster)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
SeesAllDep = Annotated[bool, Depends(caller_sees_all)]
SeesNamesDep = Annotated[bool, Depends(caller_sees_names)]
TrainerDep = Depends(require_trainer)  # for `dependencies=[TrainerDep]`: it yields nothing to the handler
