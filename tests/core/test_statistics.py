"""The statistics behind "beats naive": hand-checked small cases, closed forms of the t distribution, and
simulations (p-values roughly uniform under the null; the skill's standard error matches its spread)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from closecast.scoring import score_against_naive
from closecast.statistics import (
    diebold_mariano,
    long_run_variance,
    newey_west_lag,
    normal_cdf,
    skill_se,
    student_t_cdf,
    verdict,
    wilson_interval,
)


def test_newey_west_lag_is_the_floor_of_the_cube_root() -> None:
    assert [newey_west_lag(n) for n in (1, 7, 8, 26, 27, 1000, 2596)] == [1, 1, 2, 2, 3, 10, 13]


def test_long_run_variance_by_hand() -> None:
    # x = 1, 2, 3, 4: lag 1, centred -1.5 -0.5 0.5 1.5; γ0 = 5/4, γ1 = (0.75 - 0.25 + 0.75)/4 = 0.3125;
    # γ0 + 2 (1 - 1/2) γ1 = 1.5625
    assert long_run_variance(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.5625, rel=1e-12)
    # lag 0 is the plain (1/n) variance
    assert long_run_variance(np.array([1.0, 2.0, 3.0, 4.0]), lag=0) == pytest.approx(1.25, rel=1e-12)


def test_diebold_mariano_by_hand() -> None:
    # d = 1, 2, 3, 4: mean 2.5, variance of the mean 1.5625/4, statistic 2.5/0.625 = 4, HLN: 4·sqrt(3/4)
    test = diebold_mariano(np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4))
    stat = 4.0 * math.sqrt(3 / 4)
    assert test.statistic == pytest.approx(stat, rel=1e-12)
    t3 = 0.5 + (stat / (math.sqrt(3) * (1 + stat**2 / 3)) + math.atan(stat / math.sqrt(3))) / math.pi
    assert test.pvalue == pytest.approx(t3, rel=1e-10)  # "better" is the lower tail: the first is worse here
    assert test.pvalue_worse == pytest.approx(1 - t3, rel=1e-9)
    assert (test.n, test.lag) == (4, 1)


def test_equal_losses_give_no_evidence_either_way() -> None:
    same = np.abs(np.random.default_rng(0).normal(size=50))
    test = diebold_mariano(same, same)
    assert (test.statistic, test.pvalue, test.pvalue_worse) == (0.0, 0.5, 0.5)


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 1.9, 12.0])
def test_student_t_cdf_matches_its_closed_forms(t: float) -> None:
    assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-10, abs=1e-14)
    assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), rel=1e-10, abs=1e-14)


def test_student_t_cdf_tables_and_the_normal_limit() -> None:
    # textbook quantiles: t(10) 95% = 1.812461, 97.5% = 2.228139; t(30) 99% = 2.457262
    assert student_t_cdf(1.812461, 10) == pytest.approx(0.95, abs=1e-6)
    assert student_t_cdf(-2.228139, 10) == pytest.approx(0.025, abs=1e-6)
    assert student_t_cdf(2.457262, 30) == pytest.approx(0.99, abs=1e-6)
    assert student_t_cdf(1.959963984540054, 1e6) == pytest.approx(0.975, abs=1e-6)
    assert normal_cdf(-1.6448536269514722) == pytest.approx(0.05, rel=1e-12)


def test_wilson_interval_by_hand() -> None:
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.49016, abs=1e-5), pytest.approx(0.94331, abs=1e-5))
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n)
    out = np.empty(n)
    out[0] = e[0] / math.sqrt(1 - phi * phi)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + e[i]
    return out


def test_pvalues_are_roughly_uniform_under_the_null() -> None:
    # Two forecasts whose absolute errors differ by autocorrelated noise of mean zero: a 5% test should
    # reject about 5% of the time, and the p-values should spread evenly over [0, 1].
    rng = np.random.default_rng(7)
    p = np.array([diebold_mariano(_ar1(rng, 250, 0.4), np.zeros(250)).pvalue for _ in range(2000)])
    assert 0.03 <= float(np.mean(p < 0.05)) <= 0.08
    grid = np.linspace(0.05, 0.95, 19)
    assert np.max(np.abs(np.mean(p[:, None] <= grid, axis=0) - grid)) < 0.04


def test_a_real_difference_is_found() -> None:
    rng = np.random.default_rng(8)
    test = diebold_mariano(_ar1(rng, 500, 0.3) - 0.5, np.zeros(500))
    assert test.pvalue < 1e-3 and verdict(test.pvalue, test.pvalue_worse) == "beats naive"


def test_skill_se_matches_the_spread_of_the_skill() -> None:
    # Naive and model errors of random walks with autocorrelated volatility: the standard error from one
    # sample should match the standard deviation of the skill across samples (within 20%).
    rng = np.random.default_rng(9)
    skills, ses = [], []
    for _ in range(400):
        vol = np.exp(0.5 * _ar1(rng, 400, 0.9) / 3)
        naive = np.abs(rng.standard_t(5, 400) * vol)
        model = np.abs(0.9 * naive + 0.3 * vol * rng.normal(size=400))
        skills.append(1 - model.mean() / naive.mean())
        ses.append(skill_se(model, naive))
    assert float(np.mean(ses)) == pytest.approx(float(np.std(skills)), rel=0.2)


def test_score_against_naive_reports_the_test() -> None:
    rng = np.random.default_rng(3)
    closes = 100 * np.exp(np.cumsum(0.01 * rng.normal(size=301)))
    actual, previous = closes[1:], closes[:-1]
    scores = score_against_naive(actual, previous, previous)  # the model is naive itself
    assert scores["skill"] == 0.0 and scores["dm_pvalue"] == 0.5
    assert scores["verdict"] == "not distinguishable from naive"
    better = score_against_naive(actual, previous + 0.5 * (actual - previous), previous)
    assert better["dm_pvalue"] < 1e-6 and better["skill_se"] > 0 and better["verdict"] == "beats naive"
