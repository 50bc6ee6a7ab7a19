"""The promotion gate's scores: the candidate and the model it is judged against each forecast every close of
the candidate's own test part one step ahead, from their own window of history (and the features a model
reads), one vectorised ONNX Runtime call per model; several series pool their test closes into one MAE.
The same forecasts give the one-sided Diebold–Mariano tests of "the candidate is better" and "... is worse"
(absolute-error loss, Newey–West variance: ``closecast/statistics.py``; several series on errors relative to
each last close, as pooled test metrics are), and whether the two are the same model (every forecast equal
within ``IDENTICAL_TOLERANCE``). ``promotion.py`` decides and promotes on these scores."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from closecast.forecaster import F64, Forecaster
from closecast.representation import closes_sha256, sliding_windows
from closecast.scoring import error_metrics
from closecast.series import Series
from closecast.statistics import diebold_mariano

IDENTICAL_TOLERANCE = 1e-12  # relative to the close: forecasts this close are the same model's


@dataclass(frozen=True)
class GateScores:
    """Both models' one-step MAE on the same test closes, next to the naive forecast's."""

    candidate_mae: float
    current_mae: float
    naive_mae: float
    n: int
    first_target: int  # of the first series
    current_version: str
    against: str = "current"  # "current": this model's current version; "default": the default model's
    series: int = 1  # series whose test closes were pooled
    dm_stat: float = float(
        "nan"
    )  # Diebold-Mariano statistic of candidate vs the other (< 0: candidate better)
    dm_pvalue_better: float = float("nan")  # one-sided p-value of "the candidate is better"
    dm_pvalue_worse: float = float("nan")  # one-sided p-value of "the candidate is worse"
    dm_lag: int = 0  # Newey-West lag
    identical: bool = False  # every forecast equal within IDENTICAL_TOLERANCE: the same model
    max_relative_difference: float = float("nan")  # largest |candidate - other| / close over the test part

    def as_dict(self) -> dict[str, float | int | str | None]:
        """For the job result: a test that could not be computed (fewer than 2 closes) is null, not NaN,
        which JSON stores such as PostgreSQL's refuse."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()
        }


# What a job trained on: closes, or a series with the features a model may read; several by name.
JobData = F64 | Series | Mapping[str, F64 | Series]


def _one_step(model: Forecaster, closes: F64, features: Mapping[str, F64], first: int) -> F64:
    """Forecasts of ``closes[first:]``, each from the ``window`` closes (and the features the model reads)
    before it: ``[n]``."""
    span = slice(first - model.window, closes.size - 1)
    windows = sliding_windows(closes[span], model.window)  # [n, W]
    reads = {
        name: sliding_windows(features[name][span], model.window)
        for name in model.features
        if name in features
    }
    return model.predict_closes(windows, 1, reads or None)[:, 0]


def _closes_and_features(data: F64 | Series) -> tuple[F64, Mapping[str, F64]]:
    return (data.closes, data.features) if isinstance(data, Series) else (data, {})


def compare_on_test_part(
    candidate: Forecaster,
    current: Forecaster,
    closes: JobData,
    against: str = "current",
) -> GateScores:
    """Score both models on the candidate's test part of ``closes`` (the closes it was trained on, with their
    features for a model that reads them): one series, or several by name (their test closes pooled: one
    MAE over every test close of every series)."""
    data = candidate.manifest.get("data", {})
    if not isinstance(closes, Mapping):
        return _pooled(candidate, current, [(data, closes)], True, against)
    recorded = {entry["name"]: entry for entry in data.get("series", [])}
    missing = sorted(set(closes) - set(recorded))
    if missing or not closes:
        raise ValueError(f"{candidate.version} records no series named {missing}; refusing to judge it")
    return _pooled(candidate, current, [(recorded[name], c) for name, c in closes.items()], False, against)


def _test_part(
    version: str, entry: dict[str, Any], closes: F64, first_possible: int, strict: bool
) -> int | None:
    """Where ``closes``' test part starts (after the hash check); None for a series with no test close."""
    recorded, actual = entry.get("closes_sha256"), closes_sha256(closes)
    if recorded != actual:
        raise ValueError(
            f"the job's closes hash to {actual[:12]}… but {version} was trained on closes hashing to "
            f"{str(recorded)[:12]}…; refusing to judge it on other data"
        )
    first = max(int(entry["split"]["test_start"]), first_possible)
    return first if first < closes.size or strict else None


def _pooled(
    candidate: Forecaster,
    current: Forecaster,
    parts: list[tuple[dict[str, Any], F64 | Series]],
    strict: bool,
    against: str,
) -> GateScores:
    actual, cand, cur, naive, firsts = [], [], [], [], []
    for entry, part in parts:
        closes, features = _closes_and_features(part)
        first = _test_part(candidate.version, entry, closes, max(candidate.window, current.window), strict)
        if first is None or first >= closes.size:
            continue
        actual.append(closes[first:])
        cand.append(_one_step(candidate, closes, features, first))
        cur.append(_one_step(current, closes, features, first))
        naive.append(closes[first - 1 : -1])
        firsts.append(first)
    if not actual:
        raise ValueError(
            f"the current model {current.version} needs {current.window} closes of history, which leaves no "
            "test close to compare it on; use promote=always or never"
        )
    y, c, o = np.concatenate(actual), np.concatenate(cand), np.concatenate(cur)
    scale = np.concatenate(naive) if len(actual) > 1 else np.ones_like(y)  # relative errors when pooled
    test = diebold_mariano(np.abs(c - y) / scale, np.abs(o - y) / scale)
    difference = float(np.max(np.abs(c - o) / np.abs(np.concatenate(naive))))
    return GateScores(
        candidate_mae=error_metrics(y, c)["mae"],
        current_mae=error_metrics(y, o)["mae"],
        naive_mae=error_metrics(y, np.concatenate(naive))["mae"],
        n=int(y.size),
        first_target=firsts[0],
        current_version=current.version,
        against=against,
        series=len(actual),
        dm_stat=test.statistic,
        dm_pvalue_better=test.pvalue,
        dm_pvalue_worse=test.pvalue_worse,
        dm_lag=test.lag,
        identical=difference <= IDENTICAL_TOLERANCE,
        max_relative_difference=difference,
    )
