"""The default model's table (docs/training.md): skill vs naive and 80%/95% coverage on the S&P 500 and
MSFT test parts, and on the S&P 500 with every log return multiplied by 0.1 and by 3, through the served
code.

    python bench/default_model.py [--bundle models/default/<version>]
    python bench/default_model.py --csv FILE [--csv FILE ...] [--column Close] [--test-start 0.8]

Targets: skill >= -0.005 (0 within noise), coverage 77-83% at 80% and 93-97% at 95%.

With ``--csv FILE`` (repeatable; the options of ``bench/intervals.py``): that file's ``--column`` instead,
tested from the bundle's own test start when the bundle trained on a file of that name, else from
``--test-start`` (a fraction of the closes, default 0.8, or an index), one row per file with skill, its plain
and Newey-West standard errors, the share of rising one-step forecasts and coverage (``served.judged_row``).
A file without a ``Date`` column is taken in file order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from served import (
    JUDGED_HEADER,
    LEVELS,
    add_csv_arguments,
    cases,
    coverage,
    csv_cases,
    default_bundle,
    judged_row,
    load,
    serve,
    test_start,
)

from closecast.scoring import score_against_naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    add_csv_arguments(parser)
    args = parser.parse_args()
    bundle = args.bundle or default_bundle()
    forecaster = load(bundle)
    if args.csv:
        series = csv_cases("bench/default_model.py", bundle, args)
        print(f"bundle {bundle.name}; one step ahead on each file's test part, through Forecaster.forecast")
        print(JUDGED_HEADER)
        for name, (closes, start) in series.items():
            if start < 1 or closes.size - start < 2:
                print(
                    f"bench/default_model.py: {name}: under 2 targets in [{start}, {closes.size})",
                    file=sys.stderr,
                )
                sys.exit(2)
            print(judged_row(name, closes, start, forecaster), flush=True)
        return
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
