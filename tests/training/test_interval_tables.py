"""Per-step interval tables and synthetic fallback tables, on tiny models trained here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from closecast.config import Config
from closecast.intervals import PROBABILITIES, TABLE_STEPS, symmetric_conformal_quantiles
from closecast.series import load_csv
from tests.synthetic import write_csv
from tests.training.conftest import TINY
from training.fallback import steps_per_bar, synthetic_residuals, synthetic_table
from training.pipeline import fit_and_score
from training.steps import step_coverage
from training.train import predict_scaled


def _q80(quantiles: list[float] | np.ndarray) -> float:
    return float(np.interp(0.9, PROBABILITIES, quantiles))


def _ar1_closes(n: int, phi: float, seed: int) -> np.ndarray:
    """Log returns r[t] = phi * r[t-1] + noise: with phi < 0 an h-step move grows slower than sqrt(h)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, n - 1)
    r = np.empty(n - 1)
    r[0] = noise[0]
    for t in range(1, n - 1):
        r[t] = phi * r[t - 1] + noise[t]
    return 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))


@pytest.fixture(scope="module")
def reverting(tmp_path_factory: pytest.TempPathFactory) -> object:
    csv = write_csv(tmp_path_factory.mktemp("ar") / "reverting.csv", _ar1_closes(1600, -0.6, seed=3))
    return fit_and_score(load_csv(csv), Config.from_overrides({**TINY, "epochs": 2}), quiet=True)


def test_per_step_tables_follow_the_multi_step_residuals(reverting: object) -> None:
    """Strong mean reversion: a 5-step move is far smaller than sqrt(5) one-step moves, so the step-5 table
    (units of scale * sqrt(h)) is narrower than step 1's, and serving it brings step 5's coverage back."""
    intervals = reverting.evaluation.intervals  # type: ignore[attr-defined]
    assert intervals["horizon_scaling"] == "sqrt_per_step"
    for name in ("ewma", "window"):
        table = intervals["tables"][name]
        if table["method"] != "conformal":
            continue
        assert [s["step"] for s in table["steps"]] == list(range(2, TABLE_STEPS + 1))
        assert _q80(table["steps"][-1]["residual_quantiles"]) < 0.8 * _q80(table["residual_quantiles"])
    by_step = reverting.evaluation.metrics["test"]["coverage_by_step"]  # type: ignore[attr-defined]
    assert len(by_step["80"]) == TABLE_STEPS
    assert by_step["80"][0] == pytest.approx(reverting.test_coverage["80"], abs=0.01)  # type: ignore[attr-defined]
    for share in by_step["80"]:
        assert 0.70 <= share <= 0.90, by_step


def test_without_per_step_tables_step_five_over_covers(reverting: object) -> None:
    """The old sqrt(h) widening on the same test origins: step 5 holds far more than 80% here."""
    scored = reverting  # type: ignore[assignment]
    tables = {
        name: {"quantiles": np.asarray(t["residual_quantiles"])}
        for name, t in scored.evaluation.intervals["tables"].items()  # type: ignore[attr-defined]
    }
    predict = lambda x: predict_scaled(scored.fitted.model, x)  # type: ignore[attr-defined]  # noqa: E731
    sqrt_only = step_coverage(scored.pooled, predict, list(scored.evaluation.tests.values()), tables, (80,))  # type: ignore[attr-defined]
    per_step = scored.evaluation.metrics["test"]["coverage_by_step"]["80"]  # type: ignore[attr-defined]
    assert sqrt_only["80"][0] == pytest.approx(per_step[0], abs=1e-12)
    assert sqrt_only["80"][-1] > per_step[-1] + 0.05


def test_steps_per_bar_from_the_frequency() -> None:
    assert [steps_per_bar(f) for f in (None, "1h", "1d", "1w", "1mo", "1q", "2d", "mixed", "irregular")] == [
        1,
        1,
        1,
        5,
        21,
        63,
        2,
        1,
        1,
    ]


@pytest.fixture(scope="module")
def one_epoch(synthetic_csv: Path) -> Any:
    """One model for both frequencies below: the frequency only picks the synthetic series it is run on."""
    return fit_and_score(load_csv(synthetic_csv), Config.from_overrides({**TINY, "epochs": 1}), quiet=True)


@pytest.mark.parametrize("frequency", ["1d", "1mo"])
def test_synthetic_fallback_covers_fresh_synthetic_series(one_epoch: Any, frequency: str) -> None:
    """A table from one seed's synthetic residuals holds about its level on another seed's."""
    scored = one_epoch
    predict = lambda x: predict_scaled(scored.fitted.model, x)  # noqa: E731
    first = synthetic_residuals(scored.pooled, predict, frequency, seed=0)
    second = synthetic_residuals(scored.pooled, predict, frequency, seed=1)
    assert first is not None and second is not None
    quantiles, method, n = synthetic_table(first["ewma"])
    assert method == "synthetic_conformal" and n > 3000
    np.testing.assert_array_equal(quantiles, symmetric_conformal_quantiles(first["ewma"]))
    assert 0.76 <= float(np.mean(np.abs(second["ewma"]) <= _q80(quantiles))) <= 0.84


def test_short_series_get_a_synthetic_fallback_table(tiny_bundle: Path) -> None:
    import json

    m = json.loads((tiny_bundle / "manifest.json").read_text())
    for table in m["intervals"]["tables"].values():
        assert table["method"] == "synthetic_conformal"
        assert table["fallback"] is True and table["steps_per_bar"] == 1 and table["n"] > 3000
        assert "steps" not in table
    assert m["intervals"]["horizon_scaling"] == "sqrt"
    assert any("synthetic_conformal" in w for w in m["intervals"]["warnings"])
