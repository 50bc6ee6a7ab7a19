"""Does the default model read the window, or forecast a drift? Per series, through the served code:
skill vs naive with its standard errors, the share of rising forecasts, the correlation of the forecast
return with the realised return, and 80%/95% coverage.

    python bench/drift.py [--bundle models/default/<version>] [--length 2000] [--seed 9000]

Series: the S&P 500 and MSFT test parts (as the bundle split them), and synthetic series of known dynamics
generated here with seeds no training run uses (training seeds are ``100 * (seed + 1) + i``, under 6,500):
a Gaussian random walk, driftless GARCH(1,1)-t, two mean-reverting ones (AR(1) returns with coefficient
-0.2; a log price pulled back to its level, Ornstein-Uhlenbeck, 7% a day) and a trending one (drift 0.05
standard deviations a day). On a synthetic series every close after the first 253 is forecast (the model
never trained on it).

Columns: see ``served.judged_row`` (skill, its plain and Newey-West standard errors, z = skill / plain s.e.,
the share of rising forecasts, the forecast's correlation with the realised return, coverage).
Targets: no ``z`` below -2; ``rise`` in 40-60% on the driftless series; the mean-reverting ones ``z`` > 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from served import JUDGED_HEADER, default_bundle, judged_row, load, test_start

from closecast.series import load_csv
from training.synthetic import ar_returns, garch_shocks, ou_returns, to_closes

ROOT = Path(__file__).resolve().parents[1]
HISTORY = 253  # closes before the first synthetic target: the served EWMA's full history
SEED = 9_000  # far above every training seed
SIGMA = 0.01

Maker = Callable[[int, np.random.Generator], np.ndarray]
SYNTHETIC: dict[str, Maker] = {
    "random walk": lambda n, rng: to_closes(SIGMA * rng.standard_normal(n)),
    "driftless GARCH-t": lambda n, rng: to_closes(garch_shocks(n, SIGMA, 0.07, 0.91, rng, nu=5.0)),
    "mean-reverting AR(1) -0.2": lambda n, rng: to_closes(
        ar_returns(garch_shocks(n, SIGMA, 0.07, 0.91, rng, nu=5.0), -0.2)
    ),
    "mean-reverting OU 0.07": lambda n, rng: to_closes(
        ou_returns(garch_shocks(n, SIGMA, 0.07, 0.91, rng, nu=5.0), 0.07)
    ),
    "trending +0.05 sd/day": lambda n, rng: to_closes(
        garch_shocks(n, SIGMA, 0.07, 0.91, rng, nu=5.0) + 0.05 * SIGMA
    ),
}


def cases(length: int, bundle: Path, seed: int = SEED) -> dict[str, tuple[np.ndarray, int]]:
    """name -> (closes, index of the first target)."""
    out = {}
    for name, file in (("S&P 500 test", "sp500_daily.csv"), ("MSFT test", "msft_daily.csv")):
        closes = load_csv(ROOT / "data" / file).closes
        out[name] = (closes, test_start(bundle, file, closes.size))
    for i, (name, make) in enumerate(SYNTHETIC.items()):
        out[name] = (make(length + HISTORY, np.random.default_rng(seed + i)), HISTORY)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--length", type=int, default=2000, help="targets per synthetic series")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="synthetic series i uses seed + i (keep >= 9000)"
    )
    args = parser.parse_args()
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    print(f"bundle {bundle.name}; one step ahead, through Forecaster.forecast")
    print(JUDGED_HEADER)
    for name, (closes, start) in cases(args.length, bundle, args.seed).items():
        print(judged_row(name, closes, start, forecaster), flush=True)


if __name__ == "__main__":
    main()
