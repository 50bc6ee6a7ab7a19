"""The synthetic training series have the dynamics they are named after, and mirroring removes the drift the
training data happened to have."""

from __future__ import annotations

import numpy as np
import pytest

from closecast.config import Config, DataConfig
from closecast.series import Series
from tests.training.conftest import TINY
from training.parts import mirrored, pool
from training.synthetic import dynamics_of, synthetic_series


def up(closes: np.ndarray) -> Series:
    return Series(closes, None, "up.csv", "Close", None, closes.size, 0, name="up")


def lag1(closes: np.ndarray) -> float:
    r = np.diff(np.log(closes))
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


def test_each_dynamic_shows_in_its_series() -> None:
    series = synthetic_series(12, seed=3)
    names = dynamics_of(12)
    assert names[:6] == ["garch", "reversal", "ou", "momentum", "trend", "regimes"]
    by_name = {(name, i // 6): closes for i, (name, closes) in enumerate(zip(names, series, strict=True))}
    assert abs(lag1(by_name["garch", 0])) < 0.06
    assert lag1(by_name["reversal", 0]) < -0.08 and lag1(by_name["reversal", 1]) < -0.2
    assert lag1(by_name["momentum", 0]) > 0.04
    assert lag1(by_name["ou", 1]) < -0.02
    # the trends go up, then down: over 4000 steps a 0.08-sd drift is about 5 standard errors
    up, down = (np.log(by_name["trend", k][-1] / by_name["trend", k][0]) for k in (0, 1))
    assert up > 0 > down
    assert all(np.all(np.isfinite(c)) and np.all(c > 0) for c in series)


def test_mirroring_negates_every_return_and_centres_the_scaler() -> None:
    rising = 100 * np.exp(
        np.cumsum(np.full(600, 0.002) + 0.01 * np.random.default_rng(0).standard_normal(600))
    )
    assert np.allclose(np.diff(np.log(mirrored(rising))), -np.diff(np.log(rising)), atol=1e-12)
    cfg = DataConfig(window=11)
    plain = pool([up(rising)], cfg)
    both = pool([up(rising)], cfg, mirror=True)
    assert plain.scaler.mean > 0.1  # the drift, in window-RMS units
    assert both.scaler.mean == pytest.approx(0.0, abs=1e-12)
    train = both.dataset("train", with_augment=True)
    assert len(train) == 2 * len(plain.dataset("train", with_augment=True))
    assert np.sum(train.next_return) == pytest.approx(0.0, abs=1e-9)
    assert len(both.dataset("early_stop")) == len(plain.dataset("early_stop"))  # scoring parts: real only


def test_a_mirrored_fit_is_centred_on_its_training_windows() -> None:
    """The even part the network learned (a constant drift, mostly) is taken out after the fit: its mean
    output over the mirrored training windows is 0, so on a rising series' mirror pairs it forecasts no rise
    on average."""
    from training.pipeline import fit_and_score
    from training.train import predict_scaled

    rising = 100 * np.exp(np.cumsum(0.001 + 0.01 * np.random.default_rng(5).standard_normal(700)))
    scored = fit_and_score(
        [up(rising)], Config.from_overrides({**TINY, "epochs": 2}), quiet=True, synthetic=1, mirror=True
    )
    train = scored.pooled.dataset("train", with_augment=True)
    outputs = np.concatenate(
        [predict_scaled(scored.fitted.model, x) for x in train.input_batches(scored.pooled.scaler)]
    )
    assert abs(outputs.mean()) < 1e-6
    assert scored.augment["mirrored"] is True and isinstance(scored.augment["output_centred_by"], float)
