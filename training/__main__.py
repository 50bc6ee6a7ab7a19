"""``python -m training``: ``train`` a bundle from one or many series (CSV files, a directory, a long-format
file with an id column), ``evaluate`` (score) a bundle on them,
``backtest`` it walk-forward, or ``tune`` hyperparameters (those two in ``training/commands.py``).

Bad input exits with code 2 and one line naming the problem; nothing is left behind. ``train`` can be told
to end itself (``training/guard.py``): ``--time-limit S`` exits with code 124 after S seconds, and
``--parent-pid P`` exits with code 125 soon after process P (the service that started it) has died; both
leave nothing at ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import training
from closecast.config import Config
from training.commands import (
    add_backtest,
    add_destination_flags,
    add_guard_flags,
    add_tune,
    columns_used,
    one_line,
    progress_writer,
)
from training.flags import add_hyperparameter_flags, given
from training.guard import Stop, start_guard, stop_guard, write_stderr

PROG = "python -m training"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Train and evaluate closecast model bundles.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tr = sub.add_parser("train", help="train a model bundle from one or many CSVs of closes")
    tr.add_argument(
        "--csv",
        type=Path,
        action="append",
        required=True,
        help="CSV file with a header row, or a directory of *.csv; repeat for several series",
    )
    tr.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="add N seeded synthetic GARCH series as training windows only (default 0)",
    )
    add_destination_flags(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--no-report",
        dest="report",
        action="store_false",
        help="skip report.png (loss curves, test forecasts): saves drawing it; the bundle serves the same",
    )
    tr.add_argument(
        "--progress-file", type=Path, help="append one JSON line per epoch here (used by /train jobs)"
    )
    add_guard_flags(tr)
    add_hyperparameter_flags(tr)  # every `hp` field with cli=True, made from closecast/config.py
    ev = sub.add_parser("evaluate", help="print a bundle's one-step metrics on CSVs, per series")
    ev.add_argument("--bundle", type=Path, required=True, help="bundle directory (its model.onnx is served)")
    ev.add_argument(
        "--csv",
        type=Path,
        action="append",
        required=True,
        help="CSV file or directory: the closes and the bundle's feature columns; repeatable",
    )
    ev.add_argument("--column", help="close column (default: the one the model was trained on)")
    ev.add_argument("--date-column", help="date column (default: the one the model was trained on)")
    ev.add_argument("--id-column", help="id column (default: the one the model was trained on)")
    ev.add_argument(
        "--part",
        choices=["auto", "test", "all"],
        default="auto",
        help="auto (default): the test part of a training series, else the closes after the model's data; "
        "test: the test part only; all: every close with a full window before it",
    )
    add_backtest(sub)
    add_tune(sub, add_hyperparameter_flags)
    return parser


def _config(args: argparse.Namespace) -> Config:
    """The flags given over the config's defaults (``--date-column`` unnamed: used when the file has it)."""
    return Config.from_overrides(given(args))


def _registry_out(args: argparse.Namespace) -> Path:
    """``REGISTRY/MODEL/<new version>``; a flat-layout registry is migrated first, as the service does."""
    from closecast.migrate import new_version_dir

    salt = b"\0".join(p.name.encode() for p in args.csv)
    return new_version_dir(
        args.registry, args.model, salt, os.environ.get("CLOSECAST_DEFAULT_MODEL", "default")
    )


def _train(args: argparse.Namespace) -> int:
    from closecast.bundle import check_destination
    from closecast.series import load_many

    cfg = _config(args)
    if args.registry:
        args.out = _registry_out(args)
    elif args.promote:
        raise ValueError("--promote needs --registry (a plain --out directory has no current pointer)")
    check_destination(args.out, args.force)
    if not 0 <= args.synthetic <= 64:
        raise ValueError(f"--synthetic is {args.synthetic}; it must be in [0, 64]")
    d = cfg.data
    series = load_many(
        args.csv,
        d.column,
        d.date_column,
        d.id_column,
        require_date_column=bool(args.date_column),
        features=d.features,
    )
    # refuse short or flat data before paying for the torch import
    if len(series) == 1:
        from closecast.series import check_trainable

        check_trainable(series[0], d)
    else:
        from closecast.collection import split_by_time

        split_by_time(series, d)
    from training.pipeline import run_training

    progress = progress_writer(args.progress_file)
    manifest = run_training(
        series,
        cfg,
        args.out,
        force=args.force,
        quiet=args.quiet,
        progress=progress,
        synthetic=args.synthetic,
        started=args.started,
        report=args.report,
    )
    if args.registry and args.promote:
        from closecast.registry import set_current
        from closecast.registry_lock import registry_lock

        with registry_lock(args.registry):  # a running service's workers may be changing the registry too
            set_current(
                args.out.parent,
                args.out.name,
                reason=f"python -m training train --model {args.model} --promote",
            )
    _print_summary(args.out, manifest, args.started)
    return 0


def _print_summary(out: Path, manifest: dict[str, Any], started: float) -> None:
    """Skill and interval coverage, pooled and per series; interval warnings on stderr."""
    metrics, training = manifest["metrics"], manifest["training"]
    t = metrics["test"]
    training = manifest["training"]
    untrained = (
        "; UNTRAINED: no epoch beat the starting weights on the validation loss (best epoch 0)"
        if training.get("untrained")
        else ""
    )
    print(
        f"wrote {out}: test MAE {t['model']['mae']:.4g} vs naive {t['naive']['mae']:.4g}, {_skill(t)}, "
        f"{_coverage(t)}, {training['epochs_run']} epochs; fit {training['fit_s']:.1f}s, "
        f"total {time.perf_counter() - started:.1f}s{untrained}"
    )
    per_series = metrics.get("series", {})
    if len(per_series) > 1:
        for name, m in per_series.items():
            print(f"  {name}: {_skill(m['test'])}, {_coverage(m['test'])}, n {m['test']['n']}")
    for warning in manifest["intervals"].get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)


def _skill(scores: dict[str, Any]) -> str:
    """``skill +0.0016 ± 0.0014 (s.e.), Diebold–Mariano p 0.13: not distinguishable from naive``."""
    if "dm_pvalue" not in scores:
        return f"skill {scores['skill']:+.4f}"
    return (
        f"skill {scores['skill']:+.4f} ± {scores['skill_se']:.4f} (s.e.), Diebold–Mariano p "
        f"{scores['dm_pvalue']:.3g}: {scores['verdict']}"
    )


def _coverage(scores: dict[str, Any]) -> str:
    held = scores.get("coverage", {})
    return "intervals held " + " / ".join(f"{100 * v:.1f}% at {k}%" for k, v in held.items())


def _score_bundle(args: argparse.Namespace) -> int:
    from closecast.errors import InputInvalid
    from training.score_bundle import score_bundle

    try:
        result = score_bundle(args.bundle, args.csv, args.column, args.date_column, args.id_column, args.part)
    except InputInvalid as exc:
        raise ValueError(one_line(exc)) from None
    for item in result.get("series", [result]):
        cols = item["columns"]
        used = columns_used(f"{item['csv']} ({item['name']})", cols["close"], cols["date"], cols["features"])
        print(f"{PROG} evaluate: {used}", file=sys.stderr)
        for warning in item["warnings"]:
            print(f"{PROG} evaluate: warning: {warning}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    # the run's start: the package's import for the real command line (imports count), else now
    started = training.IMPORTED_AT if argv is None else time.perf_counter()
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        if hasattr(args, "time_limit"):  # train, tune: a /train job's process ends itself
            start_guard(args.parent_pid, args.time_limit, f"{PROG} {args.command}")
        if args.command == "train":
            return _train(args)
        if hasattr(args, "run"):  # backtest, tune (training/commands.py)
            return int(args.run(args))
        return _score_bundle(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:  # DataError is a ValueError
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Stop as stop:  # the stderr pipe may have died with the parent: no buffered print
        write_stderr(f"{PROG} {args.command}: error: {stop.reason}")
        return stop.code
    finally:
        stop_guard()


if __name__ == "__main__":
    sys.exit(main())
