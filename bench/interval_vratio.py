"""Multi-step bands from the request's own variance ratio instead of sqrt(h): a measurement before any serving
change.

    pip install -e '.[bench]'        # bench/intervals.py imports arch (no GARCH is fitted here)
    python bench/interval_vratio.py [--bundle models/default/<version>] [--every 2]
    python bench/interval_vratio.py --csv unseen/aapl_daily.csv     # final judgement only, see below

The served band at step h is ``centre * exp(+-q * v * sqrt(h))``: sqrt(h) is right for uncorrelated returns
only. A request of 253 closes carries 252 returns ``r``, so the server could measure the series' own variance
ratio ``VR(h) = Var(sum of h returns) / (h * Var(r))`` and serve ``centre * exp(+-q * v * sqrt(h) * s(h))``,
``s(h) = sqrt(clip(1 + w * (VR(h) - 1), 0.25, 4))`` (``w`` shrinks toward 1: at n = 252, h = 5 the
estimate's standard error is about 0.14). Candidates (every row uses only its own request, so one series
gets the same band alone or in a batch):

- ``lo-mac``: Lo & MacKinlay (1988, RFS 1) overlapping, bias-corrected: ``sum_t (r_t + .. + r_{t-h+1} - h
  mu)^2 / m`` over ``(n - 1) / sum (r - mu)^2``, ``m = h (n - h + 1) (1 - h / n)``.
- ``bartlett``: ``1 + 2 sum_{k<h} (1 - k / h) rho_k`` from the request's autocorrelations (asymptotically
  the same; less noisy in small samples for some dynamics).

Criterion and adoption rule, declared before any test part was scored:

- ``w`` (grid 0..1 by 0.1) is chosen per candidate on a selection set only: the bundle's calibration slices
  of the S&P 500 and MSFT (before their test parts, targets inside the slice) and 12 series of
  ``training/synthetic.py``'s six dynamics (reversal, OU, momentum among them) made with seed 77, which no
  training run uses. Loss: mean over series, steps 2..5 and levels 80/95 of the candidate's mean Winkler
  score over the served band's; the smallest wins (w = 0 is the served band).
- Scored on the S&P 500 and MSFT test parts and held-out series never used to choose: the 12 of
  ``bench/interval_scale.py`` (GARCH-t, hourly-like, regime switch, two-component: VR = 1) and 4 made here,
  AR(1) returns with phi -0.2 / +0.2 on GARCH-t shocks, two seeds each.
- Adopted only if, over those 18 series at steps 2..5: (1) the 80% coverage moves toward 77-83% (the summed
  distance outside 77-83 falls, and no cell's distance grows by more than 1 point); (2) the Winkler score at
  80% and 95% is nowhere worse than the served band's beyond 2 s.e. (50-origin blocks of the paired
  difference) and better (point estimate) in more than half of the 144 cells.
- ``--csv FILE`` (repeatable; e.g. real series nothing here saw): after the decision, only steps 1-5 coverage
  of the served band and of each chosen candidate; nothing is chosen on them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from interval_scale import closes_of, garch_t_series, held_out
from intervals import closecast_bands, held, targets
from served import (
    LEVELS,
    add_csv_arguments,
    calibration_start,
    cases,
    csv_cases,
    default_bundle,
    load,
    ratio_se,
    splits,
    winkler_each,
)

from closecast.forecaster import Forecaster
from closecast.intervals import EWMA_SPAN
from training.synthetic import ar_returns, synthetic_series

STEPS = 5
SELECTION_SEED = 77  # synthetic_series seeds 100 * (seed + 1) + i: no training run uses seed 77
W_GRID = [round(w, 1) for w in np.arange(0.0, 1.0001, 0.1)]


@dataclass(frozen=True)
class Part:
    """One series' origins: the served bands ``level -> (lower, upper) [N, H]``, the closes ``[N, H]``
    h steps after, the request's 252 returns ``[N, EWMA_SPAN]`` and the last close ``[N]``."""

    bands: dict[int, tuple[np.ndarray, np.ndarray]]
    actual: np.ndarray
    history: np.ndarray
    last: np.ndarray


def part(forecaster: Forecaster, closes: np.ndarray, origins: np.ndarray) -> Part:
    origins = origins[origins >= EWMA_SPAN]  # a full history: what a daily request of a year sends
    returns = np.diff(np.log(closes))
    history = returns[origins[:, np.newaxis] - EWMA_SPAN + np.arange(EWMA_SPAN)]  # returns before origin
    bands = closecast_bands(forecaster, closes, origins, STEPS).bands
    return Part(bands, targets(closes, origins, STEPS), history, closes[origins])


def lo_mac(r: np.ndarray) -> np.ndarray:
    """``[N, H]`` overlapping bias-corrected variance ratios of each row (1 at h = 1)."""
    n = r.shape[1]
    mu = r.mean(axis=1, keepdims=True)
    var1 = np.sum((r - mu) ** 2, axis=1) / (n - 1)
    csum = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r, axis=1)], axis=1)
    out = np.ones((r.shape[0], STEPS))
    for h in range(2, STEPS + 1):
        sums = csum[:, h:] - csum[:, :-h]
        m = h * (n - h + 1) * (1 - h / n)
        out[:, h - 1] = np.sum((sums - h * mu) ** 2, axis=1) / m / var1
    return out


def bartlett(r: np.ndarray) -> np.ndarray:
    """``[N, H]``: ``1 + 2 sum_{k<h} (1 - k/h) rho_k`` from each row's sample autocorrelations."""
    d = r - r.mean(axis=1, keepdims=True)
    den = np.sum(d * d, axis=1)
    rho = np.stack([np.sum(d[:, k:] * d[:, :-k], axis=1) / den for k in range(1, STEPS)], axis=1)
    out = np.ones((r.shape[0], STEPS))
    for h in range(2, STEPS + 1):
        k = np.arange(1, h)
        out[:, h - 1] = 1 + 2 * np.sum((1 - k / h) * rho[:, : h - 1], axis=1)
    return out


CANDIDATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"lo-mac": lo_mac, "bartlett": bartlett}


def rescaled(p: Part, vr: np.ndarray, w: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The served bands widened about their log-midpoint by ``sqrt(clip(1 + w (VR - 1)))`` per step."""
    s = np.sqrt(np.clip(1 + w * (vr - 1), 0.25, 4.0))
    out = {}
    for level, (lower, upper) in p.bands.items():
        mid, half = (np.log(upper) + np.log(lower)) / 2, (np.log(upper) - np.log(lower)) / 2
        out[level] = (np.exp(mid - s * half), np.exp(mid + s * half))
    return out


def relative_winkler(p: Part, bands: dict[int, tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean over steps 2..H and both levels of mean Winkler over the served band's."""
    out = []
    for level in LEVELS:
        for h in range(1, STEPS):
            a = p.actual[:, h]
            ours = winkler_each(a, bands[level][0][:, h], bands[level][1][:, h], level)
            served = winkler_each(a, p.bands[level][0][:, h], p.bands[level][1][:, h], level)
            out.append(ours.mean() / served.mean())
    return float(np.mean(out))


def choose(selection: list[Part]) -> dict[str, float]:
    chosen = {}
    for name, estimator in CANDIDATES.items():
        vrs = [estimator(p.history) for p in selection]
        loss = {
            w: np.mean([relative_winkler(p, rescaled(p, v, w)) for p, v in zip(selection, vrs, strict=True)])
            for w in W_GRID
        }
        print(f"{name}: selection loss (1 = served) by w: " + " ".join(f"{w}:{loss[w]:.4f}" for w in W_GRID))
        chosen[name] = min(W_GRID, key=lambda w: loss[w])
    return chosen


def distance(coverage: float) -> float:
    return max(0.0, 77.0 - coverage, coverage - 83.0)


@dataclass
class Tally:
    """The adoption rule's counts for one candidate."""

    dist_served: float = 0.0
    dist_cand: float = 0.0
    grown: int = 0
    better: int = 0
    worse: int = 0
    worse_cells: list[str] = field(default_factory=list)
    cells: int = 0


def score(name: str, p: Part, chosen: dict[str, float], tallies: dict[str, Tally]) -> None:
    """One row: 80% held per step (served, then each candidate), Winkler change at steps 2..5."""

    def held80(bands: dict[int, tuple[np.ndarray, np.ndarray]], h: int) -> float:
        return 100 * held(p.actual[:, h], bands[80][0][:, h], bands[80][1][:, h])

    cells = ["/".join(f"{held80(p.bands, h):.1f}" for h in range(STEPS))]
    for cand, w in chosen.items():
        bands = rescaled(p, CANDIDATES[cand](p.history), w)
        tally = tallies[cand]
        changes = []
        for h in range(1, STEPS):
            served, ours = held80(p.bands, h), held80(bands, h)
            tally.dist_served += distance(served)
            tally.dist_cand += distance(ours)
            tally.grown += distance(ours) > distance(served) + 1.0
            for level in LEVELS:
                a = p.actual[:, h]
                o = winkler_each(a, bands[level][0][:, h], bands[level][1][:, h], level)
                s = winkler_each(a, p.bands[level][0][:, h], p.bands[level][1][:, h], level)
                change, se = o.mean() / s.mean() - 1, ratio_se(o, s)
                tally.cells += 1
                tally.better += change < 0
                if change > 2 * se:
                    tally.worse += 1
                    tally.worse_cells.append(
                        f"{name} step {h + 1} {level}%: {100 * change:+.2f}±{100 * se:.2f}%"
                    )
                if h == STEPS - 1:
                    changes.append(f"{100 * change:+.2f}±{100 * se:.2f}")
        cells.append("/".join(f"{held80(bands, h):.1f}" for h in range(STEPS)) + " | " + " / ".join(changes))
    print(f"| {name} | {p.actual.shape[0]} | " + " | ".join(cells) + " |")


def held_out_ar() -> dict[str, np.ndarray]:
    """Mean-reverting and momentum returns on GARCH-t shocks (seeds no other series here uses)."""
    out = {}
    for seed in (13, 14):
        shocks = garch_t_series(4000, 0.012, 0.08, 0.90, 5.0, seed)
        out[f"AR(1) phi -0.2 s{seed}"] = ar_returns(shocks, -0.2)
        out[f"AR(1) phi +0.2 s{seed}"] = ar_returns(shocks, 0.2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument(
        "--every", type=int, default=2, help="synthetic series: every N-th origin (default 2)"
    )
    add_csv_arguments(parser)
    args = parser.parse_args()
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    split_of = splits(bundle)
    real = {name: c for name, c in cases().items() if name in ("S&P 500", "MSFT")}
    selection, tests = [], {}
    for name, (source, closes) in real.items():
        split = split_of[source]
        start = int(split["test_start"])
        cal = calibration_start(split)
        selection.append(part(forecaster, closes, np.arange(cal - 1, start - STEPS)))
        tests[name] = (closes, np.arange(start - 1, closes.size - STEPS))
    for closes in synthetic_series(12, seed=SELECTION_SEED):
        selection.append(part(forecaster, closes, np.arange(EWMA_SPAN, closes.size - STEPS, args.every)))
    chosen = choose(selection)
    print("chosen: " + ", ".join(f"{c} w={w}" for c, w in chosen.items()))
    for name, returns in {**held_out(), **held_out_ar()}.items():
        closes = closes_of(returns)
        tests[name] = (closes, np.arange(1500, closes.size - STEPS, args.every))
    head = " | ".join(f"{c}: 80% held | step 5 Winkler Δ% 80 / 95" for c in chosen)
    print(f"\n| series | origins | served 80% held, steps 1-5 | {head} |")
    print("|---|--:|--:|" + "--:|--:|" * len(chosen))
    tallies = {c: Tally() for c in chosen}
    for name, (closes, origins) in tests.items():
        score(name, part(forecaster, closes, origins), chosen, tallies)
    for cand, t in tallies.items():
        adopt = t.dist_cand < t.dist_served and t.grown == 0 and t.worse == 0 and t.better > t.cells / 2
        print(
            f"{cand} w={chosen[cand]}: distance outside 77-83 {t.dist_served:.1f} -> {t.dist_cand:.1f} "
            f"points, "
            f"{t.grown} cells grew > 1 point; Winkler better in {t.better}/{t.cells}, worse beyond 2 s.e. in "
            f"{t.worse}: {'ADOPT' if adopt else 'not adopted'}"
        )
        for cell in t.worse_cells:
            print(f"  worse beyond 2 s.e.: {cell}")
    if args.csv:
        print("\nfinal judgement only (nothing chosen on these):")
    for name, (closes, start) in csv_cases("bench/interval_vratio.py", bundle, args).items():
        score(
            name,
            part(forecaster, closes, np.arange(start - 1, closes.size - STEPS)),
            chosen,
            {c: Tally() for c in chosen},
        )


if __name__ == "__main__":
    main()
