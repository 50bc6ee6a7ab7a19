"""Test skill against the naive forecast over seeds and a few recipes, on any CSV (default: the S&P 500 file).

    python bench/skill.py [--csv FILE] [--seeds 0 1 2] [--recipe loss=huber,window=21 ...]

One line per run and a mean per recipe, so a default is chosen on more than one lucky seed. Runs
``training.pipeline.fit_and_score``, the first step of ``python -m training train`` (no export, no files).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from closecast.config import Config
from closecast.series import load_csv
from training.pipeline import fit_and_score

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = ["", "loss=mse", "loss=mae", "window=61"]


def _parse(recipe: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, recipe.split(",")):
        key, value = item.split("=")
        out[key] = value if key == "loss" else (float(value) if "." in value else int(value))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, action="append", help="repeat for several (default: S&P 500)")
    parser.add_argument("--synthetic", type=int, default=0, help="synthetic GARCH training series")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", nargs="+", default=DEFAULT_RECIPES, help="overrides of the defaults")
    args = parser.parse_args()
    series = [load_csv(path) for path in args.csv or [ROOT / "data" / "sp500_daily.csv"]]
    for recipe in args.recipe:
        skills = []
        for seed in args.seeds:
            cfg = Config.from_overrides({**_parse(recipe), "seed": seed})
            scored = fit_and_score(series, cfg, synthetic=args.synthetic, quiet=True)
            s, fitted = scored.evaluation.metrics["test"], scored.fitted
            skills.append(s["skill"])
            print(
                f"{recipe or 'defaults':<12} seed {seed}: test MAE {s['model']['mae']:.4g} vs naive "
                f"{s['naive']['mae']:.4g}, skill {s['skill']:+.4f}, best epoch {fitted.best_epoch}, "
                f"fit {fitted.seconds:.1f} s",
                flush=True,
            )
        print(
            f"{recipe or 'defaults':<12} mean skill {np.mean(skills):+.4f} over {len(skills)} seeds",
            flush=True,
        )


if __name__ == "__main__":
    main()
