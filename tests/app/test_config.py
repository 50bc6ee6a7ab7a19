"""Settings: CLOSECAST_* environment variables, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import app
from app.config import Settings, get_settings


def test_settings_read_prefixed_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLOSECAST_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("CLOSECAST_PORT", "9001")
    monkeypatch.setenv("CLOSECAST_PROVIDERS", "cpu")
    monkeypatch.setenv("CLOSECAST_ENABLE_NOOP", "true")
    settings = Settings()
    assert (settings.model_dir, settings.port, settings.providers, settings.enable_noop) == (
        tmp_path,
        9001,
        "cpu",
        True,
    )


def test_settings_default_to_the_repository_models_dir() -> None:
    assert Settings().model_dir == Path(app.__file__).resolve().parents[1] / "models"


def test_settings_defaults_match_the_documented_ones() -> None:
    s = Settings()
    assert (s.host, s.port, s.workers, s.providers, s.ort_threads) == ("127.0.0.1", 8000, 1, "auto", 1)
    assert (s.max_closes, s.max_horizon, s.max_batch_series, s.max_body_bytes) == (
        10_000,
        30,
        1000,
        8 * 1024 * 1024,
    )
    assert (s.inline_batch_threshold, s.enable_noop, s.reload_interval_s, s.api_key) == (64, False, 2.0, None)
    assert (s.job_queue_size, s.train_threads, s.train_nice, s.train_timeout_s, s.log_level) == (
        4,
        1,
        10,
        3600,
        "info",
    )


def test_settings_refuse_an_unknown_provider() -> None:
    with pytest.raises(ValidationError, match="providers"):
        Settings(providers="tpu")  # type: ignore[arg-type]


def test_settings_defaults_of_the_job_store_and_leases() -> None:
    s = Settings()
    assert (s.job_store_timeout_s, s.job_heartbeat_s, s.job_lease_s) == (2.0, 5.0, 60.0)


def test_settings_refuse_a_lease_shorter_than_three_heartbeats() -> None:
    with pytest.raises(ValidationError, match="CLOSECAST_JOB_LEASE_S is 10 but must be at least 3 x"):
        Settings(job_heartbeat_s=5, job_lease_s=10)


def test_settings_refuse_a_short_api_key() -> None:
    with pytest.raises(ValidationError, match="CLOSECAST_API_KEY must be at least 16 characters"):
        Settings(api_key="secret")  # type: ignore[arg-type]


def test_settings_treat_an_empty_api_key_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSECAST_API_KEY", "")
    assert Settings().api_key is None


@pytest.mark.parametrize(
    ("name", "value"), [("port", 0), ("max_horizon", 366), ("max_body_bytes", 10), ("workers", 0)]
)
def test_settings_refuse_out_of_range_values(name: str, value: int) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings.model_validate({name: value})


def test_get_settings_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("CLOSECAST_PORT", "9002")
    first = get_settings()
    monkeypatch.setenv("CLOSECAST_PORT", "9003")
    assert get_settings() is first and first.port == 9002
    get_settings.cache_clear()


def test_gate_settings_read_and_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().gate, Settings().gate_alpha) == ("not_worse", 0.05)
    monkeypatch.setenv("CLOSECAST_GATE", "superior")
    monkeypatch.setenv("CLOSECAST_GATE_ALPHA", "0.01")
    assert (Settings().gate, Settings().gate_alpha) == ("superior", 0.01)
    for name, value in (
        ("CLOSECAST_GATE", "sometimes"),
        ("CLOSECAST_GATE_ALPHA", "0"),
        ("CLOSECAST_GATE_ALPHA", "0.9"),
    ):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)
