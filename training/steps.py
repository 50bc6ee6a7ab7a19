"""Per-step interval tables for horizons 2..``TABLE_STEPS``: split-conformal on the calibration slices' own
multi-step residuals, instead of the one-step table widened by sqrt(h).

Why: sqrt(h) assumes independent steps with the volatility of step 1; real returns cluster and the recursive
rollout's errors compound, so at horizon 5 the 80% band held 74.9% on a held-out daily stock. Here each
calibration target t is also an origin: the network rolls out ``TABLE_STEPS`` returns from the window before
t (each predicted return joins the window, as serving does), and the step-h residual is ``(log(close[t+h-1] /
close[t-1]) - predicted cumulative return) / (v * sqrt(h))`` with the same interval scale ``v`` serving uses.
In these units a table equal to step 1's means "sqrt(h) was right", so the manifest stays readable and serving
only swaps the table per step. Only origins whose h-th close is still in the calibration slice are used (no
test close is read). Steps beyond ``TABLE_STEPS`` use step ``TABLE_STEPS``'s table (sqrt widening continues
from there). A step with fewer than ``MIN_CALIBRATION`` residuals, or a model that reads features (its
rollout holds the features, which training cannot replay here), gets no per-step table: serving then does
what it did before, the one-step table times sqrt(h).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.intervals import (
    MIN_CALIBRATION,
    PROBABILITIES,
    TABLE_STEPS,
    step_index,
    step_quantiles,
    symmetric_conformal_quantiles,
)
from training.parts import Pooled
from training.scored import F64, PredictFn, Scored
from training.windowset import EVAL_BATCH


def rollout(pooled: Pooled, predict: PredictFn, returns: F64, steps: int) -> F64:
    """Window returns ``[N, W-1]`` -> cumulative predicted log returns ``[N, steps]``, rolled out as in
    serving."""
    out = []
    r = np.array(returns, dtype=np.float64)
    for _ in range(steps):
        u, scale, flat = pooled.scaler.transform(r)
        x = u[..., np.newaxis].astype(np.float32)
        z = np.concatenate(
            [predict(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)] or [np.empty(0)]
        )
        nxt = np.where(flat, 0.0, pooled.scaler.inverse(z, scale))
        out.append(nxt)
        r = np.concatenate([r[:, 1:], nxt[:, np.newaxis]], axis=1)
    return np.cumsum(np.stack(out, axis=1), axis=1) if out else np.empty((len(r), 0))


def step_residuals(
    pooled: Pooled, predict: PredictFn, scored: Scored, table: str, served: bool = False
) -> list[F64]:
    """Residuals of steps 1..``TABLE_STEPS`` in units of ``v * sqrt(h)`` on one slice, where ``table``'s
    scale is usable (calibration: every target with that scale); ``served``: only where serving picks
    ``table``."""
    w = scored.windows
    keep = ~w.flat & (scored.scales[table] > 0)
    if table == "ewma" or served:
        keep &= scored.use_ewma if table == "ewma" else ~scored.use_ewma
    if not keep.any():
        return [np.empty(0) for _ in range(TABLE_STEPS)]
    cumulative = rollout(pooled, predict, w.returns[keep], TABLE_STEPS)
    target = w.target[keep]
    scale = scored.scales[table][keep]
    out = []
    for h in range(1, TABLE_STEPS + 1):
        inside = target + h - 1 < w.stop
        actual = np.log(w.series[target[inside] + h - 1] / w.series[target[inside] - 1])
        out.append((actual - cumulative[inside, h - 1]) / (scale[inside] * np.sqrt(h)))
    return out


def step_tables(
    pooled: Pooled, predict: PredictFn, calibration: list[Scored], table: str
) -> list[dict[str, Any]] | None:
    """Tables for steps 2..``TABLE_STEPS`` from the calibration slices (pooled over series), or None."""
    if pooled.features is not None:
        return None
    per_series = [step_residuals(pooled, predict, s, table) for s in calibration]
    tables = []
    for h in range(2, TABLE_STEPS + 1):
        r = np.concatenate([p[h - 1] for p in per_series])
        r = r[np.isfinite(r)]
        if r.size < MIN_CALIBRATION:
            return None
        tables.append({"step": h, "n": int(r.size), "residual_quantiles": symmetric_conformal_quantiles(r)})
    return tables


def step_coverage(
    pooled: Pooled, predict: PredictFn, tests: list[Scored], tables: dict[str, Any], levels: tuple[int, ...]
) -> dict[str, list[float]]:
    """Share of test origins inside each level's band at steps 1..``TABLE_STEPS``, pooled over series, with
    the tables serving would use (per-step where the bundle has them, else step 1's times sqrt(h)); targets
    whose served scale is a zero-scale fallback are left out."""
    probabilities = np.asarray(PROBABILITIES, dtype=np.float64)
    hits: dict[int, list[list[npt.NDArray[np.bool_]]]] = {
        level: [[] for _ in range(TABLE_STEPS)] for level in levels
    }
    per_step = {table: _per_step(tables[table]) for table in ("ewma", "window")}
    for t in tests:
        for table, quantiles in per_step.items():
            served = step_index(TABLE_STEPS, len(quantiles))
            for h, r in enumerate(step_residuals(pooled, predict, t, table, served=True)):
                q = quantiles[served[h]]
                for level in levels:
                    p = (1 - level / 100) / 2
                    lo, hi = np.interp([p, 1 - p], probabilities, q)
                    hits[level][h].append((r >= lo) & (r <= hi))
    return {str(level): [_share(h) for h in hits[level]] for level in levels}


def _share(hits: list[npt.NDArray[np.bool_]]) -> float:
    joined = np.concatenate(hits) if hits else np.empty(0, dtype=bool)
    return float(np.mean(joined)) if joined.size else float("nan")


def _per_step(table: dict[str, Any]) -> list[F64]:
    """Training's table (``quantiles``) read as serving reads a manifest table: step 1's, then its steps'."""
    return step_quantiles({"residual_quantiles": table["quantiles"], "steps": table.get("steps")})
