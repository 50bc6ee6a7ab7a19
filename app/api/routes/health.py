"""Liveness and readiness: alive is not ready until a verified model is in memory.

Readiness is about serving forecasts only: a failed background loop or an unusable job store is listed in
``degraded`` but keeps the answer 200, so a load balancer never drops a replica that forecasts fine.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import HolderDep
from app.api.schemas import Readiness, Status
from app.background import Background
from closecast.errors import ModelNotReady

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Status:
    """Alive: the process answers (always 200)."""
    return Status(status="ok")


@router.get("/readyz", responses={503: {"description": "no verified model loaded yet"}})
async def readyz(holder: HolderDep, request: Request) -> Readiness:
    """Ready: the default model is verified, loaded and serving (503 before; other models load on use);
    `degraded` lists what else is broken."""
    model = holder.current
    if model is None:
        raise ModelNotReady()
    background: Background = request.app.state.background
    return Readiness(
        status="ready", model=holder.model, model_version=model.version, degraded=background.degraded()
    )
