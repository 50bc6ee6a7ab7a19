"""``judge_and_register`` without a subprocess or a job store: a candidate bundle cloned from the fixture is
verified, judged against the served fixture, registered, and promoted or not, with its reason.

The clone was trained on ``tests/fixtures/synthetic.csv`` like the fixture and forecasts exactly as it does,
so ``auto`` refuses it as the same model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from app.inference.holder import ModelHolder
from app.jobs.promotion import judge_and_register
from closecast import registry
from closecast.series import load_csv
from tests.helpers import FIXTURE_BUNDLE, FIXTURE_VERSION, SYNTHETIC_CSV

CANDIDATE = "20300101T000000Z-candidate"


@pytest.fixture
def holder(model_dir: Path) -> ModelHolder:
    """A holder serving the fixture from a private copy of the registry."""
    holder = ModelHolder(model_dir, "cpu")
    holder.swap(holder.load_current())
    return holder


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """The fixture bundle under a new version, beside the registry as a job's work dir holds it."""
    return Path(shutil.copytree(FIXTURE_BUNDLE, tmp_path / "work" / CANDIDATE))


def trained_closes() -> np.ndarray:
    return load_csv(SYNTHETIC_CSV).closes


def test_auto_registers_but_refuses_a_candidate_that_is_the_same_model(
    holder: ModelHolder, candidate: Path
) -> None:
    outcome = judge_and_register(holder, candidate, "auto", trained_closes)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert outcome.result["promoted"] is False
    gate = outcome.result["metrics"]["gate"]
    assert gate["identical"] is True and gate["max_relative_difference"] == 0.0
    assert (gate["dm_stat"], gate["dm_pvalue_better"], gate["dm_pvalue_worse"]) == (0.0, 0.5, 0.5)
    assert outcome.result["reason"].startswith(
        "not promoted: the candidate is the same model as the current one (every forecast within 1e-12 of it "
        "on the test part; Diebold-Mariano DM 0.000, p 0.5); candidate MAE "
    )
    assert gate["current_version"] == FIXTURE_VERSION
    assert not candidate.exists() and CANDIDATE in registry.list_versions(holder.model_dir)
    assert registry.read_current(holder.model_dir) == FIXTURE_VERSION
    assert holder.current is not None and holder.current.version == FIXTURE_VERSION


def test_always_promotes_the_same_model(holder: ModelHolder, candidate: Path) -> None:
    outcome = judge_and_register(holder, candidate, "always", trained_closes)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    assert outcome.result["promoted"] is True
    assert registry.read_current(holder.model_dir) == CANDIDATE
    assert holder.current is not None and holder.current.version == CANDIDATE


def test_never_registers_without_promoting(holder: ModelHolder, candidate: Path) -> None:
    outcome = judge_and_register(holder, candidate, "never", trained_closes)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["promoted"] is False
    assert outcome.result["reason"].startswith("promote=never: registered only; candidate MAE ")
    assert CANDIDATE in registry.list_versions(holder.model_dir)
    assert registry.read_current(holder.model_dir) == FIXTURE_VERSION


def test_auto_keeps_the_current_model_when_the_closes_are_not_the_candidates(
    holder: ModelHolder, candidate: Path
) -> None:
    def other_closes() -> np.ndarray:
        closes = trained_closes()
        closes[-1] *= 1.01
        return closes

    outcome = judge_and_register(holder, candidate, "auto", other_closes)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["promoted"] is False
    reason = outcome.result["reason"]
    assert reason.startswith("not promoted: could not compare the candidate with the current model (")
    assert "refusing to judge it on other data" in reason
    assert reason.endswith(f"POST /models/default/versions/{CANDIDATE}/promote makes it current")
    assert registry.read_current(holder.model_dir) == FIXTURE_VERSION


def test_a_damaged_bundle_fails_and_changes_nothing(holder: ModelHolder, candidate: Path) -> None:
    (candidate / registry.MANIFEST).write_text("{not json")
    outcome = judge_and_register(holder, candidate, "always", trained_closes)
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("the new bundle failed verification and was discarded: ")
    assert registry.list_versions(holder.model_dir) == [FIXTURE_VERSION]
    assert holder.current is not None and holder.current.version == FIXTURE_VERSION


def test_a_cancel_request_before_the_rename_registers_nothing(holder: ModelHolder, candidate: Path) -> None:
    outcome = judge_and_register(holder, candidate, "always", trained_closes, cancel_requested=lambda: True)
    assert outcome.status == "cancelled"
    assert outcome.error == "cancelled by request before the new version was registered"
    assert registry.list_versions(holder.model_dir) == [FIXTURE_VERSION]
