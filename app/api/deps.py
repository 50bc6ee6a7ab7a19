"""Dependencies of the routes, as ``Annotated`` aliases (``def handler(model: ForecasterDep)``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.inference.holder import ModelHolder
from app.metrics import Metrics
from closecast.errors import ModelNotReady
from closecast.forecaster import Forecaster


async def get_settings_of_app(request: Request) -> Settings:
    """The settings this app was created with (not the environment: tests pass their own)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_forecaster(holder: Annotated[ModelHolder, Depends(get_holder)]) -> Forecaster:
    """The model serving now, read once so the whole request uses it even if a swap happens meanwhile."""
    forecaster = holder.current
    if forecaster is None:
        raise ModelNotReady()
    return forecaster


SettingsDep = Annotated[Settings, Depends(get_settings_of_app)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ForecasterDep = Annotated[Forecaster, Depends(get_forecaster)]
