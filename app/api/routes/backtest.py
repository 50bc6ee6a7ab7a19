"""POST /backtest: the served model scored walk-forward on the caller's series (``closecast/backtest.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.backtest_schemas import BacktestRequest, BacktestResponse
from app.api.dates import checked_dates
from app.api.deps import SettingsDep, forecasters_of
from app.api.responses import errors
from app.api.routes.forecast import check_limits
from closecast.backtest import backtest
from closecast.errors import InputInvalid, Problem

router = APIRouter(tags=["backtest"])

_ERRORS = errors(
    404,
    408,
    413,
    422,
    503,
    words={
        404: "no model of that name; the message lists known ones",
        408: "the body did not arrive within CLOSECAST_BODY_TIMEOUT_S",
        413: "body larger than CLOSECAST_MAX_BODY_BYTES",
        422: "invalid input, too few closes for the folds asked, or too many folds",
        503: "no verified model loaded yet",
    },
)


@router.post("/backtest", response_model=BacktestResponse, responses=_ERRORS)
async def run_backtest(body: BacktestRequest, settings: SettingsDep, request: Request) -> Response:
    """Score a model (default: the default model) walk-forward on a series: per fold and overall, vs naive."""
    names, models = await forecasters_of(request, [body.model])
    model = models[names[0]]
    check_limits(settings, body.horizon, [(("body", "closes"), len(body.closes))])
    if body.folds > settings.max_backtest_folds:
        raise InputInvalid(
            [Problem(("body", "folds"), f"folds is {body.folds}; at most {settings.max_backtest_folds} are "
                     "run (CLOSECAST_MAX_BACKTEST_FOLDS); ask for fewer", "too_many_folds", body.folds)]
        )  # fmt: skip
    model.check_features([body.closes], [body.features], [("body", "closes")])
    dates = checked_dates(body.closes, body.dates, ("body", "dates"))
    result = await run_in_threadpool(
        backtest,
        body.closes,
        lambda _start: model,
        model.window,
        folds=body.folds,
        horizon=body.horizon,
        dates=dates,
        trained_on=model.manifest,
        features=body.features,
    )
    content = {**result, "model": names[0], "model_version": model.version}
    return Response(to_json(content, inf_nan_mode="null"), media_type="application/json")
