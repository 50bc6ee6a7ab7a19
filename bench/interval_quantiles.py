"""Offline test of the interval *quantiles* (the scale kept): is the table's estimator, not the scale, what
keeps closecast behind a GARCH(1,1)-t? ``bench/interval_scale.py``'s data and rules, other candidates.

    pip install -e '.[bench]'        # arch (GARCH reference) and scipy
    python bench/interval_quantiles.py [--bundle models/default/<version>] [--refit 50]

The bundle's 95% table rests on the 16th smallest and 16th largest of 648 pooled calibration residuals
(S&P 500 and MSFT, 324 each). Candidates, all on the served scale (EWMA 0.94), each a rule with nothing
fitted on a test part:

- ``current``: split-conformal order statistics of the calibration residuals, each tail on its own.
- ``sym``: symmetric split-conformal on ``|e|`` (Lei, G'Sell, Rinaldo, Tibshirani & Wasserman 2018, JASA
  113): the ``ceil((n+1) level)``-th smallest ``|e|``, so each bound rests on both tails (twice the sample).
- ``pooled``: ``current`` on the early-stopping residuals as well (1296). Cost: early stopping chose the
  epoch on those residuals, so they are not exchangeable with test residuals in the split-conformal sense
  (one parameter chosen on them; its effect on the tails is small but not zero).
- ``sym+pooled``: both (four times the tail sample).
- ``t-ML``: quantiles of a location-scale Student-t fitted by maximum likelihood to the calibration residuals
  (a parametric smooth of the tails; ``scipy.stats.t.fit``).
- ``HD``: the Harrell & Davis (1982, Biometrika 69) quantile estimator, a Beta-weighted mean of all order
  statistics instead of one of them.
- ``POT``: peaks over threshold (McNeil & Frey 2000, J. Empirical Finance 7: GPD tails on GARCH-filtered
  residuals): beyond each tail's 10% order statistic a generalised Pareto fitted by maximum likelihood to
  the exceedances; the 80% bounds are the order statistics themselves.

Criterion (declared before looking at any test part): blocked 6-fold cross-validation on the calibration
slices (each fold one contiguous sixth of each series' calibration part; the table from the other five,
``pooled`` candidates adding every early-stopping residual), the mean Winkler score at 80% + 95% in units of
each series' RMS return, relative to ``current``. (The in-sample Winkler score cannot choose: the raw order
statistic is its own in-sample optimum.) A candidate lands only if it is not worse than ``current`` beyond
2 standard errors on any test part or held-out series (``interval_scale.held_out``), better on most, and
its coverage stays within 77-83% / 93-97% on the four test parts. ``oracle`` (the test part's own residual
quantiles: unattainable) bounds what any constant table could gain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from interval_scale import LEVELS, Prepared, closes_of, held_out, parse_args, prepare
from intervals import garch_one_step
from scipy import stats
from served import block_se, calibration_start, cases, default_bundle, load, splits, winkler_each

from closecast.intervals import conformal_quantiles

Bounds = dict[int, tuple[float, float]]  # level -> (lower, upper) in scale units
Rule = Callable[[np.ndarray, np.ndarray], Bounds]  # (calibration, early-stop residuals) -> bounds
FOLDS = 6
TAIL = 0.10  # POT threshold: each tail's 10% order statistic
TARGETS = {80: (77.0, 83.0), 95: (93.0, 97.0)}


def order_bounds(e: np.ndarray) -> Bounds:
    out = {}
    for level in LEVELS:
        p = (1 - level / 100) / 2
        lo, hi = conformal_quantiles(e, [p, 1 - p])
        out[level] = (float(lo), float(hi))
    return out


def sym_bounds(e: np.ndarray) -> Bounds:
    a = np.sort(np.abs(e))
    out = {}
    for level in LEVELS:
        q = float(a[min(math.ceil((a.size + 1) * level / 100), a.size) - 1])
        out[level] = (-q, q)
    return out


def t_bounds(e: np.ndarray) -> Bounds:
    df, loc, scale = stats.t.fit(e)
    out = {}
    for level in LEVELS:
        p = (1 - level / 100) / 2
        lo, hi = stats.t.ppf([p, 1 - p], df, loc, scale)
        out[level] = (float(lo), float(hi))
    return out


def hd_bounds(e: np.ndarray) -> Bounds:
    out = {}
    for level in LEVELS:
        p = (1 - level / 100) / 2
        lo, hi = stats.mstats.hdquantiles(e, prob=[p, 1 - p])
        out[level] = (float(lo), float(hi))
    return out


def pot_tail(x: np.ndarray, p: float) -> float:
    """The upper ``p`` quantile of ``x`` (p < TAIL): GPD on the exceedances over the TAIL order statistic."""
    s = np.sort(x)
    k = math.floor(TAIL * s.size)
    u = float(s[-k - 1])
    xi, _, sigma = stats.genpareto.fit(s[-k:] - u, floc=0.0)
    ratio = p * s.size / k
    excess = sigma * math.log(1 / ratio) if abs(xi) < 1e-9 else sigma / xi * (ratio ** (-xi) - 1)
    return u + excess


def pot_bounds(e: np.ndarray) -> Bounds:
    out = order_bounds(e)
    p = (1 - 95 / 100) / 2
    out[95] = (-pot_tail(-e, p), pot_tail(e, p))
    return out


RULES: dict[str, Rule] = {
    "current": lambda cal, early: order_bounds(cal),
    "sym": lambda cal, early: sym_bounds(cal),
    "pooled": lambda cal, early: order_bounds(np.concatenate([cal, early])),
    "sym+pooled": lambda cal, early: sym_bounds(np.concatenate([cal, early])),
    "t-ML": lambda cal, early: t_bounds(cal),
    "HD": lambda cal, early: hd_bounds(cal),
    "POT": lambda cal, early: pot_bounds(cal),
}


@dataclass(frozen=True)
class Part:
    """One series' targets on the served scale: residuals ``e`` aligned with the targets, and which count."""

    p: Prepared
    v: np.ndarray  # [N] served scale (EWMA 0.94)
    e: np.ndarray  # [N] residual in scale units (0 where not kept)
    keep: np.ndarray  # [N] counted in a table: moving window, positive scale

    @property
    def actual(self) -> np.ndarray:
        return self.p.closes[self.p.targets]

    @property
    def unit(self) -> float:
        return math.sqrt(float(np.mean(self.p.actual**2))) * float(np.mean(self.actual))


def part(p: Prepared) -> Part:
    v = p.scale(1.0, 0.94)
    keep = ~p.flat & (v > 0)
    e = np.where(keep, (p.actual - p.predicted) / np.where(keep, v, 1.0), 0.0)
    return Part(p, v, e, keep)


def points(x: Part, b: Bounds, level: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Per-target Winkler score (prices) of the band ``b[level]`` on ``x``'s targets (or ``rows`` of them)."""
    rows = np.arange(x.v.size) if rows is None else rows
    lo, hi = b[level]
    base = x.p.closes[x.p.targets[rows] - 1] * np.exp(x.p.predicted[rows])
    return winkler_each(x.actual[rows], base * np.exp(lo * x.v[rows]), base * np.exp(hi * x.v[rows]), level)


def cv_loss(cal: list[Part], early: np.ndarray, rule: Rule) -> float:
    """Blocked FOLDS-fold cross-validated Winkler (80% + 95%, per-series RMS units), calibration parts."""
    folds = [np.array_split(np.arange(x.v.size), FOLDS) for x in cal]
    total = []
    for k in range(FOLDS):
        rest = np.concatenate(
            [x.e[x.keep & ~np.isin(np.arange(x.v.size), f[k])] for x, f in zip(cal, folds, strict=True)]
        )
        b = rule(rest, early)
        for x, f in zip(cal, folds, strict=True):
            total.append(sum(float(np.mean(points(x, b, level, f[k]))) for level in LEVELS) / x.unit)
    return float(np.mean(total))


def change(new: np.ndarray, old: np.ndarray) -> tuple[float, float]:
    """Paired relative change of the mean and its standard error from block means."""
    d = (new - old) / np.mean(old)
    return float(d.mean()), block_se(d)


@dataclass
class Tally:
    better: int = 0
    worse: int = 0
    better_point: int = 0
    cells: int = 0
    worst: tuple[float, float, str] = (-math.inf, 1.0, "")

    def add(self, d: float, se: float, where: str) -> None:
        """Count one paired change ``d`` (standard error ``se``); keep the worst by ``d / se``."""
        self.cells += 1
        self.better += d < -2 * se
        self.worse += d > 2 * se
        self.better_point += d < 0
        if d / max(se, 1e-12) > self.worst[0] / self.worst[1]:
            self.worst = (d, max(se, 1e-12), where)


def row(
    name: str,
    x: Part,
    tables: dict[str, Bounds],
    garch: dict[int, tuple[np.ndarray, np.ndarray]],
    tallies: dict[str, Tally],
    coverage: dict[str, list[str]] | None,
) -> None:
    """Print one series: per candidate held 80/95, Winkler ratio to GARCH, change vs current ± s.e."""
    base = {level: points(x, tables["current"], level) for level in LEVELS}
    g = {level: float(np.mean(winkler_each(x.actual, *garch[level], level))) for level in LEVELS}
    cells = []
    for cand, b in tables.items():
        held, ratio, delta = [], [], []
        for level in LEVELS:
            lo, hi = b[level]
            pts = points(x, b, level)
            base_lo = x.p.closes[x.p.targets - 1] * np.exp(x.p.predicted)
            lower, upper = base_lo * np.exp(lo * x.v), base_lo * np.exp(hi * x.v)
            inside = (x.actual >= lower) & (x.actual <= upper)
            held.append(100 * float(np.mean(inside)))
            ratio.append(float(np.mean(pts)) / g[level])
            if cand != "current":
                d, se = change(pts, base[level])
                delta.append(f"{100 * d:+.1f}±{100 * se:.1f}")
                if cand in tallies:  # not the oracle
                    tallies[cand].add(d, se, f"{name} {level}%")
        if coverage is not None and cand in coverage:
            for level, h in zip(LEVELS, held, strict=True):
                lo_t, hi_t = TARGETS[level]
                if not lo_t <= h <= hi_t:
                    coverage[cand].append(f"{name} {level}% {h:.1f}")
        cells.append(
            f"{held[0]:.1f}/{held[1]:.1f} {ratio[0]:.3f}/{ratio[1]:.3f}"
            + (" " + "/".join(delta) if delta else "")
        )
    print(f"| {name} | {x.v.size} | " + " | ".join(cells) + " |")


def slices(forecaster, bundle: Path) -> tuple[list[Part], list[Part], dict[str, tuple[np.ndarray, int]]]:
    """Calibration and early-stopping parts of the bundle's real series, and the test cases' starts."""
    split_of = splits(bundle)
    cal, early, tests = [], [], {}
    for name, (source, closes) in cases().items():
        split = split_of[source]
        train, val_end = int(split["train"]), int(split["test_start"])
        cal_start = calibration_start(split)
        if name in ("S&P 500", "MSFT"):
            cal.append(part(prepare(forecaster, closes, cal_start, val_end)))
            early.append(part(prepare(forecaster, closes, train, cal_start)))
        tests[name] = (closes, val_end)
    return cal, early, tests


def kept(parts: list[Part]) -> np.ndarray:
    return np.concatenate([x.e[x.keep] for x in parts])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    cal, early_parts, tests = slices(forecaster, bundle)
    cal_e, early_e = kept(cal), kept(early_parts)
    print(f"bundle {bundle.name}; {cal_e.size} calibration residuals, {early_e.size} early-stopping ones")
    base_cv = cv_loss(cal, early_e, RULES["current"])
    cv = {c: cv_loss(cal, early_e, r) / base_cv for c, r in RULES.items()}
    print("blocked 6-fold CV loss vs current: " + ", ".join(f"{c} {v:.4f}" for c, v in cv.items()))
    chosen = min(cv, key=lambda c: cv[c])
    print(f"criterion picks: {chosen}")
    tables = {c: r(cal_e, early_e) for c, r in RULES.items()}
    for c, b in tables.items():
        print(f"  {c}: " + "  ".join(f"{lv}% [{lo:+.3f}, {hi:+.3f}]" for lv, (lo, hi) in b.items()))
    names = list(tables)
    print("\ncells: held 80/95%, Winkler ratio to GARCH(1,1)-t 80/95, change vs current 80/95 in % ± s.e.\n")
    print("| series | n | " + " | ".join(names) + " | oracle |")
    print("|---|--:|" + "--:|" * (len(names) + 1))
    test_tally = {c: Tally() for c in names[1:]}
    held_tally = {c: Tally() for c in names[1:]}
    misses: dict[str, list[str]] = {c: [] for c in names}
    for name, (closes, start) in tests.items():
        x = part(prepare(forecaster, closes, start, closes.size))
        oracle = {**tables, "oracle": order_bounds(x.e[x.keep])}
        row(name, x, oracle, garch_one_step(closes, x.p.targets, args.refit), test_tally, misses)
    for name, returns in held_out().items():
        closes = closes_of(returns)
        x = part(prepare(forecaster, closes, args.start, closes.size))
        row(name, x, tables, garch_one_step(closes, x.p.targets, args.refit), held_tally, None)
    print(
        "\n| candidate | CV vs current | tests better/worse beyond 2 s.e. (of 8) | held-out (of 24) |"
        " better point estimate | worst (change/s.e.) | coverage outside target |"
    )
    print("|---|--:|--:|--:|--:|---|---|")
    for c in names[1:]:
        t, h = test_tally[c], held_tally[c]
        worst = max((t.worst, h.worst), key=lambda w: w[0] / max(w[1], 1e-12))
        print(
            f"| {c} | {cv[c]:.4f} | {t.better}/{t.worse} | {h.better}/{h.worse} | "
            f"{t.better_point + h.better_point}/{t.cells + h.cells} | "
            f"{100 * worst[0]:+.1f}±{100 * worst[1]:.1f}% {worst[2]} | {'; '.join(misses[c]) or '-'} |"
        )


if __name__ == "__main__":
    main()
