"""``/train``: queue, follow and cancel retrain jobs (``app/jobs/``).

Every endpoint here, and ``POST /models/{version}/promote``, needs ``Authorization: Bearer <key>`` with the
key of ``CLOSECAST_API_KEY``; without a configured key they answer 403 and say how to enable them.
"""

from __future__ import annotations

import json
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.api.bodies import json_text_problem
from app.api.deps import RunnerDep, SettingsDep, TrainerDep
from app.api.errors import without_paths
from app.api.forms import form_schema, inline_schema
from app.api.responses import errors
from app.api.train_many import prepare_files, prepare_json
from app.api.train_schemas import JobAccepted, JobList, JobOut, TrainRequest, UploadForm
from app.config import Settings
from app.inference.models import LoadedModels
from app.jobs.runner import JobRunner
from app.jobs.spec import Prepare
from app.storage.errors import QueueFull
from app.storage.job_store import Job
from closecast.errors import InputInvalid, Problem, TooManyModels

JobId = Annotated[str, Path(max_length=64, description="the `job_id` POST /train answered")]

router = APIRouter(tags=["training"], dependencies=[TrainerDep])

_AUTH = (401, 403)
_FORM_SCHEMA = form_schema(UploadForm)
_TRAIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_schema(TrainRequest)},
            "multipart/form-data": {
                "schema": {
                    **_FORM_SCHEMA,
                    "properties": {
                        # one part; the field may be repeated (one CSV per series), which schemathesis
                        # cannot generate from an array of binary (it leaves the file out)
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "one CSV, or one per series (repeat the field), or one "
                            "long-format CSV with `id_column`",
                        },
                        **_FORM_SCHEMA["properties"],
                    },
                    "required": ["file"],
                }
            },
        },
    }
}


def _out(job: Job, settings: Settings) -> JobOut:
    """A job as answered: its error (a training process's last line may name its files) without paths."""
    out = JobOut.of(job)
    if out.error:
        out.error = without_paths(out.error, settings.model_dir)
    return out


def _invalid(exc: ValidationError, prefix: tuple[str, ...] = ("body",)) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors(include_url=False)])


def _json_invalid(exc: ValueError | RecursionError) -> RequestValidationError:
    """A body ``json.loads`` refused: bad syntax, bytes that are not UTF-8, or nesting too deep to parse."""
    if isinstance(exc, json.JSONDecodeError):
        pos, error = exc.pos, exc.msg
    elif isinstance(exc, UnicodeDecodeError):
        pos, error = exc.start, f"byte 0x{exc.object[exc.start]:02x} is not valid {exc.encoding.upper()}"
    elif isinstance(exc, RecursionError):
        pos, error = 0, "arrays or objects nested too deeply"
    else:
        pos, error = 0, str(exc)
    item = {"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error", "input": {}}
    return RequestValidationError([{**item, "ctx": {"error": error}}])


async def _from_json(request: Request, settings: Settings) -> Prepare:
    raw = await request.body()
    if (problem := json_text_problem(raw)) is not None:  # json.loads would take both, unlike /forecast
        item = {"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([{**item, "ctx": {"error": problem}}])
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _json_invalid(exc) from None
    try:
        body = TrainRequest.model_validate(data, strict=True)  # like /forecast: no "100.5" or true as a price
    except ValidationError as exc:
        raise _invalid(exc) from None
    model = await anyio.to_thread.run_sync(_model_with_room, request, body.model)
    return await anyio.to_thread.run_sync(prepare_json, body, settings, model)


def _model_with_room(request: Request, model: str | None) -> str:
    """The job's model (default: the default model); a new name only while fewer than CLOSECAST_MAX_MODELS
    models exist (409 with the reason)."""
    models: LoadedModels = request.app.state.models
    name = model or models.default_name
    names = models.names()
    if name not in names and len(names) >= models.max_models:
        raise TooManyModels(name, models.max_models)
    return name


async def _from_upload(request: Request, settings: Settings, runner: JobRunner) -> Prepare:
    if not await anyio.to_thread.run_sync(runner.queue_has_room):  # before reading a large upload
        raise QueueFull(settings.job_queue_size)
    # closes the spooled uploads after; one file per series (CLOSECAST_MAX_BATCH_SERIES): one file more is
    # let through so that the 413 says so (Starlette refuses still more with a 400 before we see them)
    async with request.form(max_files=settings.max_batch_series + 1, max_fields=64) as form:
        uploads = [u for u in form.getlist("file") if isinstance(u, UploadFile)]
        if not uploads:
            problem = Problem(("body", "file"), "file is required; upload the CSV as `-F file=@prices.csv` "
                              "(repeat -F file=@... for several series)", "missing")  # fmt: skip
            raise InputInvalid([problem])
        try:
            fields = UploadForm.model_validate({k: v for k, v in form.multi_items() if k != "file"})
        except ValidationError as exc:
            raise _invalid(exc) from None
        model = await anyio.to_thread.run_sync(_model_with_room, request, fields.model)
        files = [(u.filename, await u.read()) for u in uploads]
        return prepare_files(fields, files, settings, model)


@router.post(
    "/train",
    status_code=202,
    openapi_extra=_TRAIN_BODY,
    responses=errors(
        *_AUTH,
        409,
        413,
        422,
        429,
        503,
        507,
        words={
            409: "CLOSECAST_MAX_MODELS models exist and `model` would be a new one",
            422: "invalid data or params, with the training CLI's own messages",
            429: "CLOSECAST_JOB_QUEUE_SIZE jobs are already queued",
            503: "the model dir cannot hold jobs (read-only, or the job store is unusable)",
            507: "no space left in the model dir for the job's data",
        },
    ),
)
async def submit_job(
    request: Request, response: Response, runner: RunnerDep, settings: SettingsDep
) -> JobAccepted:
    """Queue a retrain (or tune) job on one or several series sent as JSON or CSV uploads; poll the
    `Location` it answers."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    prepare = await (_from_upload(request, settings, runner) if multipart else _from_json(request, settings))
    job = await anyio.to_thread.run_sync(runner.submit, prepare)
    runner.wake()
    response.headers["Location"] = f"/train/{job.id}"
    return JobAccepted(job_id=job.id, status="queued")


@router.get("/train", responses=errors(*_AUTH, 422, 503))
async def list_jobs(
    runner: RunnerDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200, description="jobs to list")] = 20,
) -> JobList:
    """Recent jobs, newest first."""
    jobs = await anyio.to_thread.run_sync(runner.recent, limit)
    return JobList(jobs=[_out(j, settings) for j in jobs])


@router.get("/train/{job_id}", responses=errors(*_AUTH, 404, 422, 503, words={404: "no such job"}))
async def get_job(job_id: JobId, runner: RunnerDep, settings: SettingsDep) -> JobOut:
    """A job's status, progress per epoch and, once it ended, its result or error."""
    return _out(await anyio.to_thread.run_sync(runner.get, job_id), settings)


@router.delete(
    "/train/{job_id}",
    responses=errors(*_AUTH, 404, 409, 422, 503, words={404: "no such job", 409: "the job already ended"}),
)
async def cancel_job(job_id: JobId, runner: RunnerDep, settings: SettingsDep) -> JobOut:
    """Cancel a queued or running job (a running one is killed; its bundle never appears)."""
    job = await anyio.to_thread.run_sync(runner.cancel, job_id)
    if not job.finished:
        job = await runner.wait_finished(job_id, timeout_s=10)
    return _out(job, settings)
