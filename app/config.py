"""Every setting of the service, read once from ``CLOSECAST_*`` environment variables.

One typed class, validated at start so a bad value stops the process with a message instead of failing
on the first request. Tests build ``Settings(...)`` directly and pass it to ``create_app``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import app as _package
from closecast.registry import model_name_problem

REPO_MODELS_DIR = Path(_package.__file__).resolve().parents[1] / "models"

# Hard ceilings: the request schemas declare them as bounds, so a setting above one could never be reached.
MAX_CLOSES_CEILING = 1_000_000
MAX_HORIZON_CEILING = 365
MAX_BATCH_SERIES_CEILING = 100_000
MAX_BACKTEST_FOLDS_CEILING = 1000

Providers = Literal["auto", "cpu", "cuda"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Service configuration; each field is the environment variable ``CLOSECAST_<NAME>``."""

    # hide_input_in_errors: a refused setting is named but its value never printed (a short API key is a
    # secret all the same); the messages below say what is expected instead.
    model_config = SettingsConfigDict(
        env_prefix="CLOSECAST_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Model registry
    model_dir: Path = Field(
        default=REPO_MODELS_DIR, description="registry served: one dir per model name, each with versions"
    )
    default_model: str = Field(
        default="default",
        description="the model a request without `model` gets; always loaded; /readyz is about it",
    )
    max_models: int = Field(default=100, ge=1, le=10_000, description="model names the registry may hold")
    max_loaded_models: int = Field(
        default=16, ge=1, le=10_000, description="models kept loaded (LRU; the default model always is)"
    )
    keep_versions: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="per model, prune never-promoted versions beyond the newest N (unset: keep all)",
    )
    default_model_dir: Path | None = Field(
        default=None,
        description="registry copied into an empty model_dir at start (first start of a Docker volume)",
    )

    # Server
    host: str = Field(default="127.0.0.1", min_length=1, description="interface uvicorn binds to")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port")
    workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes (each loads the model)"
    )
    log_level: LogLevel = Field(default="info", description="log level of the service and uvicorn")
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024**2,
        description="request line and headers at most this many bytes (431 after); `closecast` serve only",
    )
    header_timeout_s: float = Field(
        default=10,
        gt=0,
        le=3600,
        description="request headers must arrive within this of the connection or request start (408 after); "
        "`closecast` serve only",
    )

    # Inference
    providers: Providers = Field(default="auto", description="auto = CUDA when it loads, else CPU")
    ort_threads: int = Field(default=1, ge=1, le=64, description="ONNX Runtime intra-op threads per session")
    inline_batch_threshold: int = Field(
        default=64,
        ge=0,
        le=MAX_BATCH_SERIES_CEILING,
        description="batches larger than this run off the event loop",
    )
    batch_max_size: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="concurrent single-series /forecast requests run as one ONNX Runtime call, at most this "
        "many (1 = off)",
    )
    batch_max_delay_us: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="longest a /forecast request waits for others to join its call; 0 = only those "
        "already waiting on the event loop",
    )
    reload_interval_s: float = Field(
        default=2.0, ge=0.05, le=3600, description="how often each worker checks the `current` pointer"
    )

    # Request limits
    max_closes: int = Field(default=10_000, ge=2, le=MAX_CLOSES_CEILING, description="closes per series")
    max_horizon: int = Field(default=30, ge=1, le=MAX_HORIZON_CEILING, description="steps ahead per request")
    max_batch_series: int = Field(
        default=1000, ge=1, le=MAX_BATCH_SERIES_CEILING, description="series per /forecast/batch request"
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=1024**3, description="request body limit of /forecast/batch"
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=4 * 1024**3, description="request body limit of POST /train"
    )
    body_timeout_s: float = Field(
        default=30, gt=0, le=3600, description="a request body must arrive within this (408 after)"
    )
    big_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024**3,
        description="bodies above this wait for a big-body slot; batches above it parse in a child process",
    )
    big_body_slots: int = Field(default=2, ge=1, le=64, description="big bodies read and parsed at once")
    big_body_wait_s: float = Field(
        default=30, gt=0, le=3600, description="a big body waits at most this for a slot (503 after)"
    )
    parse_nice: int = Field(
        default=10, ge=0, le=19, description="niceness of the batch-parsing child process"
    )
    max_backtest_folds: int = Field(
        default=20, ge=1, le=MAX_BACKTEST_FOLDS_CEILING, description="folds per POST /backtest request"
    )
    otel_telemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry spans and metrics (needs an OpenTelemetry SDK, which the "
        "image does not ship); off spares every request FastAPI's probe for configured providers",
    )
    enable_noop: bool = Field(default=False, description="register POST /noop/forecast (benchmarks only)")

    # Admin and retraining jobs
    api_key: SecretStr | None = Field(
        default=None,
        description="bearer key for /train and promotion (`Authorization: Bearer <key>`); unset = disabled",
    )
    protect_reads: bool = Field(
        default=False,
        description="put /models*, /train*, /metrics, /docs, /redoc and /openapi.json behind the key too",
    )
    job_queue_size: int = Field(default=4, ge=1, le=1000, description="retrain jobs waiting at most")
    train_threads: int = Field(default=1, ge=1, le=64, description="torch threads of a retrain job")
    train_nice: int = Field(default=10, ge=0, le=19, description="niceness of the retrain subprocess")
    train_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where retrain jobs train (`--device`): auto = CUDA when torch sees one"
    )
    train_timeout_s: float = Field(
        default=3600, gt=0, le=7 * 24 * 3600, description="a retrain job is killed after this"
    )
    tune_timeout_s: float = Field(
        default=4 * 3600,
        gt=0,
        le=7 * 24 * 3600,
        description="a tune job (POST /train with `tune`) is killed after this at most: its search's "
        "`timeout_s` plus CLOSECAST_TRAIN_TIMEOUT_S for the final refit, capped here",
    )
    job_store_timeout_s: float = Field(
        default=2.0, gt=0, le=30, description="longest wait on a locked job store before answering 503"
    )
    job_heartbeat_s: float = Field(
        default=5.0, ge=0.05, le=600, description="a running job's worker renews its lease this often"
    )
    job_lease_s: float = Field(
        default=60.0,
        ge=0.2,
        le=24 * 3600,
        description="a running job whose lease was not renewed this long is failed as `worker lost`",
    )

    # Promotion gate of promote=auto jobs (docs/statistics.md)
    gate: Literal["not_worse", "superior"] = Field(
        default="not_worse",
        description="not_worse: promote unless a one-sided Diebold-Mariano test finds the candidate worse "
        "than the current version; superior: only when it finds it better (identical and untrained ones are "
        "refused either way)",
    )
    gate_alpha: float = Field(
        default=0.05, gt=0, le=0.5, description="significance level of the gate's Diebold-Mariano test"
    )

    # Scale-out (docs/scale-out.md)
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:pass@host:5432/db: jobs and pointers in PostgreSQL; unset = embedded",
    )
    db_pool_size: int = Field(default=4, ge=1, le=100, description="PostgreSQL connections per process")
    run_jobs: bool = Field(default=True, description="false: this API process only enqueues (workers train)")

    # Operations (docs/scale-out.md): the worker's health and metrics port, Optuna's schema and role
    worker_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="`closecast worker` serves /healthz and /metrics here; 0: off",
    )
    optuna_schema: str = Field(
        default="closecast_optuna",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="schema of Optuna's tables",
    )
    optuna_role: str = Field(
        default="closecast_optuna",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="the role a tune job's training process opens its study as (migrate creates it)",
    )
    optuna_password: SecretStr | None = Field(
        default=None,
        description="that role's password; unset: derived from database_url's password (none if it has none)",
    )

    # Object storage (docs/object-storage.md): bundles, pointer copies and job data in an S3 bucket
    model_store: str | None = Field(
        default=None,
        description="s3://bucket/prefix: the registry lives there and model_dir is a local cache; needs "
        "database_url; endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...",
    )

    @field_validator("model_store")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        body = value.removeprefix("s3://")
        if body == value or not body.split("/", 1)[0]:
            raise ValueError(
                f"CLOSECAST_MODEL_STORE is {value[:80]!r}; use s3://bucket or s3://bucket/prefix, or leave "
                "it unset to keep the registry in CLOSECAST_MODEL_DIR"
            )
        return value

    @model_validator(mode="after")
    def _store_needs_a_database(self) -> Settings:
        if self.model_store is not None and self.database_url is None:
            raise ValueError(
                "CLOSECAST_MODEL_STORE needs CLOSECAST_DATABASE_URL (postgresql://...): the database holds "
                "which version each replica serves; set both, or neither for one machine"
            )
        return self

    @model_validator(mode="after")
    def _store_cache_is_not_the_seed(self) -> Settings:
        """With a store the model dir is a cache that a listing prunes to what the bucket holds: were it also
        the seed registry, an already-seeded bucket would make a listing delete that registry's versions."""
        if self.model_store is not None and self.default_model_dir == self.model_dir:
            raise ValueError(
                f"CLOSECAST_DEFAULT_MODEL_DIR and CLOSECAST_MODEL_DIR are both {str(self.model_dir)!r}; with "
                "CLOSECAST_MODEL_STORE the model dir is a cache pruned to the bucket's versions: give it a "
                "directory of its own"
            )
        return self

    @field_validator("model_dir", "default_model_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("default_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        problem = model_name_problem(value)
        if problem is not None:
            raise ValueError(f"CLOSECAST_DEFAULT_MODEL is {value!r}; {problem}")
        return value

    @field_validator("api_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("CLOSECAST_API_KEY must be at least 16 characters (use `openssl rand -hex 16`)")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        scheme = value.get_secret_value().split("://", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"CLOSECAST_DATABASE_URL starts with {scheme[:20]!r}; use "
                "postgresql://user:password@host/db, or leave it unset for the embedded job store"
            )
        return value

    @model_validator(mode="after")
    def _reads_need_a_key(self) -> Settings:
        if self.protect_reads and self.api_key is None:
            raise ValueError(
                "CLOSECAST_PROTECT_READS=true needs CLOSECAST_API_KEY (16+ characters) to check callers "
                "against; set the key, or leave reads open with CLOSECAST_PROTECT_READS=false"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        if self.job_lease_s < 3 * self.job_heartbeat_s:
            raise ValueError(
                f"CLOSECAST_JOB_LEASE_S is {self.job_lease_s:g} but must be at least 3 x "
                f"CLOSECAST_JOB_HEARTBEAT_S ({3 * self.job_heartbeat_s:g}): one late heartbeat must not "
                "lose a job; raise the lease or lower the heartbeat"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment once (``cache_clear()`` re-reads)."""
    return Settings()
