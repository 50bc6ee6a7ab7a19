"""``python -m training backtest`` and ``python -m training tune``: their flags and what they run.

Kept apart from ``__main__.py`` (which only registers them) so the train command's module stays small.
Bad input raises ``ValueError`` (a ``DataError`` or the core's ``InputInvalid`` reworded), which the CLI
turns into exit code 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from closecast.errors import InputInvalid

STORAGE_ENV = "CLOSECAST_TUNE_STORAGE"  # how a /train job hands a shard its study's database URL

# read by the command itself (the CSV's columns), not searched nor fixed in the search's parameters
COLUMN_FLAGS = ("column", "date_column", "id_column")


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def positive_seconds(text: str) -> float:
    seconds = float(text)
    if not seconds > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def add_guard_flags(p: argparse.ArgumentParser) -> None:
    """``--time-limit`` and ``--parent-pid`` (``training/guard.py``): how a job's process ends itself."""
    p.add_argument(
        "--time-limit", type=positive_seconds, metavar="S", help="stop (exit 124) after S seconds, wall-clock"
    )
    p.add_argument("--parent-pid", type=int, metavar="PID", help="stop (exit 125) once process PID has ended")


def progress_writer(path: Path | None) -> Callable[[dict[str, Any]], None] | None:
    """A callback appending each event as one JSON line to ``path`` (the job supervisor reads the last)."""
    if path is None:
        return None
    target = path

    def write(event: dict[str, Any]) -> None:
        with target.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")

    return write


def add_backtest(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="walk-forward (rolling-origin) backtest of a bundle on a CSV")
    bt.add_argument("--bundle", type=Path, required=True, help="bundle directory (its model.onnx is served)")
    bt.add_argument(
        "--csv",
        type=Path,
        required=True,
        help="CSV file with a header row: the closes, and the columns of the features the bundle reads",
    )
    bt.add_argument("--column", default="Close", help="column holding the closes (default %(default)s)")
    bt.add_argument(
        "--date-column", default=None, help="column holding the dates; default 'Date' when present, else none"
    )
    bt.add_argument("--folds", type=_count, default=5, help="expanding-window folds (default %(default)s)")
    bt.add_argument("--horizon", type=_count, default=1, help="steps scored per origin (default %(default)s)")
    bt.add_argument(
        "--refit", action="store_true", help="retrain the bundle's config on each fold's past (slow, honest)"
    )
    bt.add_argument("--json", action="store_true", help="print only one JSON object on stdout")
    bt.set_defaults(run=run_backtest_command)


def one_line(exc: InputInvalid) -> str:
    """An ``InputInvalid`` as one short line: each distinct message once (one per forecast origin would
    repeat the same words thousands of times), the first few and how many more."""
    distinct = list(dict.fromkeys(p.msg for p in exc.problems)) or [exc.message]
    more = f" (and {len(distinct) - 3} more)" if len(distinct) > 3 else ""
    return "; ".join(distinct[:3]) + more


def columns_used(source: str, column: str, date_column: str | None, features: Sequence[str]) -> str:
    """Which columns of a CSV were read, for the user: closes, dates, and the bundle's features."""
    read = [f"closes from {column!r}"] + ([f"dates from {date_column!r}"] if date_column else [])
    read.append(
        f"features {', '.join(features)} from their columns (matched in any case)"
        if features
        else "no features (the bundle reads none)"
    )
    return f"read {source}: {'; '.join(read)}"


def bundle_features(bundle: Path) -> tuple[str, ...]:
    """The features a bundle reads (``input.features``); none when its manifest cannot be read (loading
    the bundle then says why, in one line)."""
    from closecast.bundle import contract_features
    from closecast.errors import BundleInvalid

    try:
        manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
        return contract_features(manifest, bundle.name)
    except (OSError, ValueError, TypeError, AttributeError, KeyError, BundleInvalid):
        return ()


def add_destination_flags(parser: argparse.ArgumentParser) -> None:
    """Where ``train`` and ``tune`` write their bundle: ``--out`` or ``--registry``/``--model``
    (``--promote``), and ``--force``."""
    dest = parser.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", type=Path, help="bundle directory to create")
    dest.add_argument(
        "--registry",
        type=Path,
        help="registry: write a new version of --model there, as REGISTRY/MODEL/VERSION (models/README.md)",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("CLOSECAST_DEFAULT_MODEL", "default"),
        help="with --registry: the model's name, a slug (default: $CLOSECAST_DEFAULT_MODEL or `default`)",
    )
    parser.add_argument(
        "--promote", action="store_true", help="with --registry: make the new version current"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing non-empty --out")


def add_tune(sub: Any, hyperparameter_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    tu = sub.add_parser("tune", help="Optuna search; the best trial refitted and written as a bundle")
    tu.add_argument("--csv", type=Path, required=True, help="CSV file with a header row")
    add_destination_flags(tu)
    tu.add_argument("--trials", type=_count, default=20, help="trials to run now (default %(default)s)")
    tu.add_argument(
        "--budget",
        type=_count,
        help="trials in the whole study, every shard together: this process stops once the study has "
        "that many finished (MaxTrialsCallback; K shards may overshoot by K-1 already running)",
    )
    tu.add_argument("--shard", type=int, default=0, help="this shard's index (its sampler's seed offset)")
    tu.add_argument("--timeout", type=float, metavar="S", help="stop starting trials after S seconds")
    tu.add_argument("--trial-timeout", type=float, metavar="S", help="prune a trial running over S seconds")
    tu.add_argument("--folds", type=_count, default=3, help="walk-forward folds (default %(default)s)")
    tu.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV),
        help=f"Optuna storage URL (default: ${STORAGE_ENV}, which keeps a password off the command line; "
        "else a SQLite file beside the bundle)",
    )
    tu.add_argument(
        "--stage",
        choices=("both", "search", "refit"),
        default="both",
        help="`search`: trials only, no bundle (a shard of a distributed job); `refit`: no new trial, refit "
        "the study's best (once the shards are done); default both",
    )
    tu.add_argument("--study", help="study name; the same name resumes (default closecast-<csv name>)")
    tu.add_argument(
        "--trial-heartbeat",
        type=_count,
        metavar="S",
        help="server storages (PostgreSQL): a running trial's heartbeat every S s (default 10) ...",
    )
    tu.add_argument(
        "--trial-grace",
        type=_count,
        metavar="S",
        help="... and a trial silent for S s (its process was killed) is failed and run again once by the "
        "next trial any shard starts (default 30); /train jobs pass CLOSECAST_JOB_HEARTBEAT_S and _LEASE_S",
    )
    tu.add_argument(
        "--jobs",
        type=_count,
        help="trials run at once, in threads, each fit on one torch thread (default: the cores this process "
        "may use, at most --trials; 1 with --budget or --stage search: a shard sharing its study)",
    )
    tu.add_argument("--quiet", action="store_true", help="no progress bar")
    tu.add_argument(
        "--progress-file",
        type=Path,
        help="append one JSON line per finished trial and per refit epoch here (used by /train jobs)",
    )
    add_guard_flags(tu)
    hyperparameter_flags(tu)  # each flag given fixes that parameter
    tu.set_defaults(run=run_tune_command)


def _load(args: argparse.Namespace, features: Sequence[str] = ()) -> Any:
    from closecast.config import DataConfig
    from closecast.series import load_csv

    return load_csv(
        args.csv,
        args.column or DataConfig().column,  # tune's --column (a config flag) is None when not given
        args.date_column or "Date",
        require_date_column=bool(args.date_column),
        features=features,
    )


def run_backtest_command(args: argparse.Namespace) -> int:
    from training.folds import run_backtest

    features = bundle_features(args.bundle)
    series = _load(args, features)
    try:
        result = run_backtest(args.bundle, series, folds=args.folds, horizon=args.horizon, refit=args.refit)
    except InputInvalid as exc:
        raise ValueError(one_line(exc)) from None
    used = columns_used(series.source, series.column, series.date_column, features)
    print(f"python -m training backtest: {used}", file=sys.stderr)  # once it worked: errors stay one line
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_backtest(result))
    return 0


def format_backtest(result: dict[str, Any]) -> str:
    """A fold-by-fold table and the overall line, for a human."""
    lines = [f"{'fold':>4} {'from':>10} {'to':>10} {'n':>6} {'MAE':>10} {'naive':>10} {'skill':>8} "
             f"{'s.e.':>7} {'DM p':>7} {'cov80':>6} {'cov95':>6}  in_sample"]  # fmt: skip
    rows = [*result["folds"], {**result["overall"], "fold": "all", "in_sample": ""}]
    for r in rows:
        cov = r["coverage"]
        lines.append(
            f"{r['fold']!s:>4} {r.get('date_start') or r.get('start', ''):>10} "
            f"{r.get('date_end') or r.get('stop', ''):>10} {r['n']:>6} {r['model']['mae']:>10.4f} "
            f"{r['naive']['mae']:>10.4f} {r['skill']:>+8.4f} {r['skill_se']:>7.4f} {r['dm_pvalue']:>7.3g} "
            f"{cov['80']:>6.1%} {cov['95']:>6.1%}  {r['in_sample']}"
        )
    lines.append(f"overall: {result['overall']['verdict']} (one-sided Diebold-Mariano test at 5%)")
    return "\n".join(lines)


def run_tune_command(args: argparse.Namespace) -> int:
    from closecast.bundle import check_destination
    from closecast.config import Config
    from training.flags import given
    from training.tune import Search, default_storage, only_study_files, sqlite_file, tune

    base = {k: v for k, v in given(args).items() if k not in COLUMN_FLAGS}
    if base.pop("features", None) is not None:
        raise ValueError("tune searches on the closes alone (it reads no features); drop --features")
    Config.from_overrides(base)  # refuse bad fixed values before reading the data
    if args.registry:
        from closecast.migrate import new_version_dir

        default = os.environ.get("CLOSECAST_DEFAULT_MODEL", "default")
        args.out = new_version_dir(args.registry, args.model, args.csv.name.encode(), default)
    elif args.promote:
        raise ValueError("--promote needs --registry (a plain --out directory has no current pointer)")
    study = args.study or f"closecast-{args.csv.stem}"
    where = args.registry / ".tuning" if args.registry else args.out.resolve()
    storage = args.storage or default_storage(where, study)
    if args.stage != "search" and not only_study_files(args.out, sqlite_file(storage)):
        check_destination(args.out, args.force)
    series = _load(args)
    jobs = _jobs(args)
    if jobs > 1:  # one torch thread per trial: `jobs` trials fill `jobs` cores without oversubscribing
        base["threads"] = 1
    search = Search(
        base=base,
        trials=args.trials,
        timeout=args.timeout,
        trial_timeout=args.trial_timeout,
        folds=args.folds,
        storage=storage,
        study=study,
        quiet=args.quiet,
        budget=args.budget,
        shard=args.shard,
        progress=progress_writer(args.progress_file),
        stage=args.stage,
        jobs=jobs,
        **_trial_heartbeat(args),
    )
    if args.stage == "search":
        return _search_only(series, search)
    manifest = tune(series, search, args.out, force=args.force)
    if args.registry and args.promote:
        from closecast.registry import set_current
        from closecast.registry_lock import registry_lock

        with registry_lock(args.registry):  # a running service's workers may be changing the registry too
            set_current(
                args.out.parent, args.out.name, f"python -m training tune --model {args.model} --promote"
            )
    t, tuning = manifest["metrics"]["test"], manifest["tuning"]
    print(
        f"wrote {args.out}: {tuning['n_trials']} trials ({tuning['n_pruned']} pruned) in "
        f"{tuning['search_seconds']:.0f}s, best objective {tuning['best_value']:.4f} "
        f"{json.dumps(tuning['best_params'])}; test skill {t['skill']:+.4f}"
    )
    return 0


def _jobs(args: argparse.Namespace) -> int:
    """``--jobs``, or by default every core this process may use (at most ``--trials``) when it runs the
    whole study, and one for a shard (its job's other shards run on other workers)."""
    if args.jobs is not None:
        return int(args.jobs)
    if args.stage != "both" or args.budget is not None:  # a shard: a budget shared with other processes
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), args.trials))


def _trial_heartbeat(args: argparse.Namespace) -> dict[str, int]:
    """``--trial-heartbeat`` and ``--trial-grace`` as given; ``Search``'s defaults for the others."""
    given = {"heartbeat": args.trial_heartbeat, "grace": args.trial_grace}
    return {name: value for name, value in given.items() if value is not None}


def _search_only(series: Any, search: Any) -> int:
    """A shard's run: trials on the shared study until its budget is reached; no bundle."""
    from training.tune import run_search, search_state

    state = search_state(run_search(series, search), search.budget or search.trials)
    print(f"shard {search.shard} of study {search.study!r}: {json.dumps(state)}")
    return 0
