"""Liveness and readiness: alive is not ready until a verified model is in memory."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import HolderDep
from app.api.schemas import Status
from closecast.errors import ModelNotReady

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Status:
    """Alive: the process answers (always 200)."""
    return Status(status="ok")


@router.get("/readyz", responses={503: {"description": "no verified model loaded yet"}})
async def readyz(holder: HolderDep) -> Status:
    """Ready: the default model is verified, loaded and serving (503 before); other models load on use."""
    model = holder.current
    if model is None:
        raise ModelNotReady()
    return Status(status="ready", model=holder.model, model_version=model.version)
