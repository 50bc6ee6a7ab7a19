"""The gate does not decide on noise, through the real app and real training subprocesses: a retrain that
reproduces the current model is refused as the same model, an untrained candidate is refused, and a freshly
trained bundle's card carries its skill's standard error and its Diebold-Mariano p-value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from closecast import registry
from tests.helpers import DEFAULT, FIXTURE_VERSION, copy_registry
from tests.jobs.helpers import AUTH, TINY, build_app, submit, trainer_settings, wait_status
from tests.synthetic import make_closes

SERIES = make_closes(300, seed=4)
LEARNS = {**TINY, "epochs": 6}  # enough epochs for the tiny model to beat its starting weights here


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    final = wait_status(client, job_id, "succeeded", "failed", "cancelled", timeout=180.0)
    assert final["status"] == "succeeded", final
    result: dict[str, Any] = final["result"]
    return result


@pytest.fixture(scope="module")
def twice(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, Path, list[dict[str, Any]]]]:
    """The same series trained twice with the same seed: the first made current by hand (promote=always),
    the second judged by the default gate against it."""
    model_dir = copy_registry(tmp_path_factory.mktemp("identical") / "models")
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        first = _finished(client, submit(client, SERIES, promote="always", params=LEARNS))
        second = _finished(client, submit(client, SERIES, promote="auto", params=LEARNS))
        yield client, model_dir, [first, second]


Twice = tuple[TestClient, Path, list[dict[str, Any]]]


def test_an_identical_retrain_is_not_promoted_and_the_reason_names_the_test(twice: Twice) -> None:
    _client, model_dir, (first, second) = twice
    assert first["promoted"] is True and first["untrained"] is False, first
    gate = second["metrics"]["gate"]
    assert gate["identical"] is True and gate["current_version"] == first["version"]
    assert gate["max_relative_difference"] <= 1e-12
    assert second["promoted"] is False
    assert second["reason"].startswith("not promoted: the candidate is the same model as the current one")
    assert "Diebold-Mariano" in second["reason"] and f"p {gate['dm_pvalue_better']:.3g}" in second["reason"]
    assert registry.read_current(model_dir / DEFAULT) == first["version"]


def test_a_fresh_bundles_card_and_job_result_carry_the_statistics(twice: Twice) -> None:
    client, _model_dir, (first, _second) = twice
    card = client.get("/models/current").json()
    assert card["version"] == first["version"]
    test = card["metrics"]["test"]
    assert card["skill_se"] == test["skill_se"] > 0
    assert card["dm_pvalue"] == test["dm_pvalue"] and 0 <= card["dm_pvalue"] <= 1
    assert card["beats_naive"] is (card["dm_pvalue"] < 0.05)
    assert card["verdict"] in {"beats naive", "not distinguishable from naive", "worse than naive"}
    assert card["untrained"] is False and "in_sample" in card["in_sample_rule"]
    assert first["metrics"]["test"]["dm_pvalue"] == test["dm_pvalue"]  # the job result says the same
    for coverage in test["coverage_interval"].values():
        assert 0 <= coverage[0] <= coverage[1] <= 1
    summary = next(m for m in client.get("/models").json()["models"] if m["model"] == DEFAULT)
    assert (summary["skill_se"], summary["dm_pvalue"]) == (card["skill_se"], card["dm_pvalue"])


def test_an_untrained_candidate_is_refused(tmp_path: Path) -> None:
    """A learning rate of 1e-9 cannot move the validation loss by min_delta: best epoch 0."""
    model_dir = copy_registry(tmp_path / "models")
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        result = _finished(client, submit(client, SERIES, promote="auto", params={**TINY, "lr": 1e-9}))
        assert result["untrained"] is True
        assert result["promoted"] is False
        assert result["reason"].startswith("not promoted: the candidate is untrained")
        assert registry.read_current(model_dir / DEFAULT) == FIXTURE_VERSION
        listed = client.get("/models/default/versions", headers=AUTH).json()["versions"]
        assert result["version"] in {v["version"] for v in listed}  # registered, not served
