"""GET /models/current: the model card of the bundle serving now."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ForecasterDep
from app.schemas import ModelCard

router = APIRouter(tags=["models"])


@router.get("/models/current", responses={503: {"description": "no verified model loaded yet"}})
async def current_model(model: ForecasterDep) -> ModelCard:
    """The served model: version, window, test metrics against the naive forecast, data range, provider."""
    return ModelCard(**model.card())
