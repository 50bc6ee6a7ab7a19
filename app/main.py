"""The ASGI app: ``uvicorn app.main:app`` (or ``python -m app``). Wiring only.

``create_app`` builds the app without touching the disk; the lifespan migrates a flat-layout registry (or
seeds an empty volume), loads and verifies the default model (the process fails to start without one) and
runs the background loops (``background_tasks``), each supervised on its own: the pointer watchers (hot swaps
of the default model and of the other loaded models), the retrain job runner. Other models load on use.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib import metadata

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI

from app.api import docs_ui, openapi
from app.api.bodies import BatchParser
from app.api.errors import register_error_handlers
from app.api.fastpath import ForecastFastPath
from app.api.head import HeadAsGet
from app.api.middleware import BodyLimits, RequestMetrics
from app.api.protect import PROTECTED_READS, ProtectReads
from app.api.query import RejectUnknownQuery
from app.api.routes import backtest, forecast, health, metrics, model_admin, models, oip, train
from app.background import Background, Supervised
from app.config import Settings, get_settings
from app.inference.batcher import Batcher
from app.inference.holder import ModelHolder
from app.inference.models import LoadedModels, watch_models
from app.inference.pinned import PinnedVersions
from app.jobs.runner import JobRunner
from app.metrics import Metrics
from app.storage.backends import Backends, build_backends
from closecast import registry
from closecast.migrate import prepare_registry
from closecast.providers import cuda_built, cuda_unavailable
from closecast.registry_lock import registry_lock

log = logging.getLogger("app")

# One router per resource file; a new resource is one import above and one entry here.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    forecast.router,
    models.router,
    model_admin.router,
    metrics.router,
    train.router,
    backtest.router,
    oip.router,  # the Open Inference Protocol (KServe v2 REST)
)


def _version() -> str:
    try:
        return metadata.version("closecast")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def _configure_logging(level: str) -> None:
    """Give the ``app`` loggers a handler unless the host (pytest, a log config) already set one up."""
    logger = logging.getLogger("app")
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def _prepare_registry(settings: Settings) -> None:
    """Migrate a flat-layout registry and seed an empty volume, one process at a time (closecast.migrate)."""
    try:
        # with an object store, the store is seeded (app/backends.py) and the model dir is only a cache
        seed_from = settings.default_model_dir if settings.model_store is None else None
        done = prepare_registry(settings.model_dir, settings.default_model, seed_from)
    except OSError as exc:
        raise RuntimeError(
            f"cannot bring the model dir into the named layout ({exc.strerror or exc}); make it writable "
            "for one start, or move its versions into a directory named as CLOSECAST_DEFAULT_MODEL"
        ) from exc
    for what in done:
        log.info("%s", what)


def _record_existing_pointer(holder: ModelHolder) -> None:
    """Under the registry lock, and only when there is something to write: workers starting together write one
    history line, not one each; a registry with its history never opens the lock (a read-only one serves)."""
    if registry.pointer_unrecorded(holder.model_dir):
        with registry_lock(holder.registry_root):
            registry.record_existing_pointer(holder.model_dir)  # checks again, under the lock


async def _load_model(settings: Settings, holder: ModelHolder, backends: Backends) -> None:
    """Migrate or seed the registry, open the backends (a database: connect, migrate, seed its pointers
    from the files), then load, verify and serve the default model."""
    await anyio.to_thread.run_sync(_prepare_registry, settings)
    try:  # a registry from before the promotion history: its pointer becomes the first promotion
        await anyio.to_thread.run_sync(_record_existing_pointer, holder)
    except OSError as exc:  # a read-only model dir still serves; it just has no history to fall back to
        log.warning("cannot record the current pointer in the promotion history: %s", exc.strerror or exc)
    await anyio.to_thread.run_sync(backends.open)
    model = await anyio.to_thread.run_sync(holder.load_current)  # BundleInvalid here stops the process
    holder.swap(model)
    if settings.providers == "auto" and (why_not_cuda := cuda_unavailable()):
        level = logging.WARNING if cuda_built() else logging.INFO  # a CPU-only build falls back by design
        log.log(level, "%s; serving on %s", why_not_cuda, model.provider)
    log.info(
        "ready: model %s (window %d) on ONNX Runtime %s",
        model.version,
        model.window,
        model.provider,
    )


def background_tasks(app: FastAPI) -> Background:
    """The worker's background loops; a new loop is one ``Supervised(name, fn)`` line here."""
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    jobs: JobRunner = app.state.jobs
    parser: BatchParser = app.state.batch_parser
    loops = [
        # Both follow promotions within the reload interval once the registry answers again: their backoff
        # is capped by it (the default 30 s cap left replicas a promotion behind for up to 30 s)
        Supervised("pointer", app.state.backends.watcher, max_backoff_s=settings.reload_interval_s),
        Supervised(
            "models",
            partial(watch_models, app.state.models, settings.reload_interval_s),
            max_backoff_s=settings.reload_interval_s,
        ),
        Supervised("jobs", jobs.serve, waits_for_start=True, health=jobs.health),
        Supervised("batch_parser", parser.serve, health=parser.health),  # owns the child; lists its crashes
    ]
    return Background(
        loops,
        on_change=lambda task: metrics.background_changed(task.name, task.up),
        on_failure=lambda task: metrics.background_failed(task.name),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model (the process fails to start without one), then run the background loops until
    shutdown, each on its own (one that fails is restarted; the others never notice)."""
    settings: Settings = app.state.settings
    holder: ModelHolder = app.state.holder
    _configure_logging(settings.log_level)
    backends: Backends = app.state.backends
    await _load_model(settings, holder, backends)
    # Startup objects (modules, the model) leave the cyclic GC's scans: full collections no longer stall
    # requests (64-series batch p99 32 ms -> 5 ms on one connection). Unfrozen at shutdown so nothing leaks.
    gc.freeze()
    try:
        async with anyio.create_task_group() as group:
            await app.state.background.start(group)  # the job runner first fails the jobs of gone workers
            yield
            group.cancel_scope.cancel()
    finally:
        gc.unfreeze()
        backends.close()  # brief: ends the pool's connections (nothing for the embedded store)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: the environment). Loads nothing until the lifespan runs."""
    settings = settings or get_settings()
    app = FastAPI(
        title="closecast",
        version=_version(),
        summary="Next-close forecasts from an LSTM over log returns, served by ONNX Runtime.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc from the package's own assets (app/api/docs_ui.py), no CDN
        redoc_url=None,
        # without an SDK (the image has only the API) FastAPI finds no provider, but it looks on every request
        telemetry=None if settings.otel_telemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = app_metrics = Metrics()
    app.state.models = LoadedModels(settings, app_metrics)  # every model name; the default always loaded
    app.state.holder = app.state.models.default
    app.state.pinned_versions = PinnedVersions(
        app.state.models, settings.max_loaded_models
    )  # /v2/.../versions
    app.state.backends = backends = build_backends(settings, app.state.models)  # embedded or PostgreSQL
    app.state.jobs = JobRunner(settings, app.state.models, backends.store)  # starts in the lifespan
    app.state.batch_parser = BatchParser(settings.parse_nice)  # big batches parsed in a child process
    app.state.batcher = Batcher(settings.batch_max_size, settings.batch_max_delay_us)  # joins /forecasts
    app.state.background = background_tasks(app)
    register_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.enable_noop:
        app.include_router(forecast.noop_router)
    # /forecast and /forecast/batch without FastAPI's request machinery (same bytes; errors go through it)
    app.add_middleware(ForecastFastPath, routes=[*forecast.router.routes, *oip.router.routes])
    app.add_middleware(BodyLimits, settings=settings)  # per route: limit, deadline, big-body slots
    app.add_middleware(RejectUnknownQuery)  # free without a query string
    if settings.protect_reads and settings.api_key is not None:  # Settings refuses it without a key
        app.add_middleware(ProtectReads, key=settings.api_key)  # outermost check: 401 before any other answer
    docs_ui.install(app)
    openapi.install(app, settings, app.state.holder, PROTECTED_READS if settings.protect_reads else ())
    plain_paths = frozenset(path for r in app.routes if "{" not in (path := getattr(r, "path", "{")))
    app.add_middleware(RequestMetrics, metrics=app_metrics, plain_paths=plain_paths)  # counts 413s
    app.add_middleware(
        HeadAsGet
    )  # outermost: HEAD is GET to every layer and route (the server drops the body)
    return app


app = create_app()
