"""The default model's table (docs/training.md): skill vs naive and 80%/95% coverage on the S&P 500 and
MSFT test parts, and on the S&P 500 with every log return multiplied by 0.1 and by 3, through the served
code.

    python bench/default_model.py [--bundle models/default/<version>]

Targets: skill >= -0.005 (0 within noise), coverage 77-83% at 80% and 93-97% at 95%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from served import LEVELS, cases, coverage, default_bundle, load, serve, test_start

from closecast.scoring import score_against_naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    bundle = parser.parse_args().bundle or default_bundle()
    forecaster = load(bundle)
    print(f"bundle {bundle.name}; one step ahead on each test part, through Forecaster.forecast")
    print("| test set | n | skill (se) | 80% held | 95% held |\n|---|--:|--:|--:|--:|")
    for name, (source, closes) in cases().items():
        s = serve(forecaster, closes, test_start(bundle, source, closes.size))
        skill = score_against_naive(s.actual, s.forecast, s.last)["skill"]
        gain = np.abs(s.actual - s.last) - np.abs(s.actual - s.forecast)
        se = gain.std() / np.sqrt(gain.size) / np.abs(s.actual - s.last).mean()
        held = " | ".join(f"{100 * coverage(s, level):.1f}%" for level in LEVELS)
        print(f"| {name} | {s.actual.size} | {skill:+.4f} ({se:.4f}) | {held} |")


if __name__ == "__main__":
    main()
