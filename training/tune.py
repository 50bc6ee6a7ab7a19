"""``python -m training tune``: an Optuna search over the hyperparameters, judged by walk-forward folds of
the training + validation part only; the best trial is refitted on the whole series and written as an
ordinary bundle whose manifest gains a ``tuning`` section (and ``tuning.png``, the optimisation history).

The test part of the series (the last ``1 - train_frac - val_frac``) is never given to the objective: it
stays untouched for the final bundle's report, the only honest figure left after a search.

Folds are nested prefixes of the development part (``closes[:val_end]``): the largest is the whole part,
each smaller one ends where its larger neighbour's test part starts, so their test parts are adjacent,
non-overlapping blocks walking forward in time. Each fold is one ``fit_and_score`` (its own split, scaler,
early stopping) of that prefix; the objective is the mean over folds of MAE(model) / MAE(naive) on the
prefix's own test part: 1.0 is the naive forecast, lower is better.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from tqdm import tqdm

from closecast.config import Config, DataConfig
from closecast.series import DataError, Series, make_split, min_rows
from training.folds import past_of
from training.parts import pool
from training.pipeline import ScoredModel, fit_and_score
from training.search_space import search_space, span, suggest
from training.study_storage import (  # noqa: F401 (default_storage, only_study_files: the CLI's, from here)
    HEARTBEAT_GRACE_S,
    HEARTBEAT_S,
    default_storage,
    only_study_files,
    rdb_storage,
    redact,
    sqlite_file,
)
from training.train import ProgressFn, make_loss

OBJECTIVE = (
    "mean over walk-forward folds of the training + validation part (never the test part) of the one-step "
    "MAE of the model divided by that of the naive forecast; 1.0 = naive, lower is better"
)
WINDOW_RANGE = span("window")  # closecast/config.py: every search range is declared on its field
# Distributed tuning: a study's budget counts finished trials; a killed shard's trial is failed by heartbeat.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SHARD_SEED_STEP = 7919  # shards' samplers start from different seeds, so they do not draw the same trials
SEARCH_SPACE = search_space()  # docs/training.md "Tuning"; a CLI flag fixes a parameter instead


@dataclass(frozen=True)
class Search:
    """What a search is asked to do: the fixed parameters (flags), budget and study location."""

    base: dict[str, Any]  # every hyperparameter flag given: fixed, never searched
    trials: int
    timeout: float | None
    trial_timeout: float | None
    folds: int
    storage: str
    study: str
    quiet: bool = False
    budget: int | None = None  # trials in the whole study, every shard together (None: `trials` now)
    shard: int = 0  # this process's index among the shards sharing the study (its sampler's seed)
    progress: ProgressFn | None = None  # one event per finished trial and per refit epoch (/train jobs)
    stage: str = "both"  # "search": trials only, no bundle (a job's shard); "refit": no new trial, refit best
    heartbeat: int = HEARTBEAT_S  # a trial's heartbeat (RDB storages); stale, failed and retried after grace
    grace: int = HEARTBEAT_GRACE_S
    jobs: int = 1  # trials run at once in threads of this process, each on one torch thread


def dev_folds(n_dev: int, cfg: DataConfig, folds: int) -> list[int]:
    """Prefix lengths of the development part, ascending; each one's test part ends where the next starts."""
    sizes = [n_dev]
    for _ in range(folds - 1):
        sizes.append(make_split(sizes[-1], cfg).val_end)
    return sizes[::-1]


def window_bound(smallest: int, cfg: DataConfig, fixed_window: int | None) -> int:
    """The largest window the smallest fold can train with (at most the top of the window field's search
    range, ``WINDOW_RANGE``; the flag's value when ``--window`` is given), or a DataError saying why."""
    if fixed_window is not None:
        candidates = [fixed_window]
    else:
        candidates = list(range(WINDOW_RANGE[1], WINDOW_RANGE[0] - 1, -1))
    for window in candidates:
        if min_rows(DataConfig(window=window, train_frac=cfg.train_frac, val_frac=cfg.val_frac)) <= smallest:
            return window
    w = candidates[-1]
    need = min_rows(DataConfig(window=w, train_frac=cfg.train_frac, val_frac=cfg.val_frac))
    raise DataError(
        f"the smallest walk-forward fold has {smallest} closes but window {w} needs {need}; "
        "send a longer series or ask for fewer --folds"
    )


def _pruning_hook(
    trial: optuna.Trial | optuna.trial.FixedTrial, fold: int, cfg: Config, series: Series, deadline: float
) -> ProgressFn:
    """Report each epoch's validation loss, relative to the drift-only forecast's (so huber, mse and mae
    trials compare on one scale), and stop the trial when the pruner says so or its time is up."""
    pooled = pool([series], cfg.data)
    y = torch.from_numpy(pooled.dataset("early_stop").targets(pooled.scaler))
    zero_loss = float(make_loss(cfg.train)(torch.zeros_like(y), y)) or 1.0

    def hook(event: dict[str, Any]) -> None:
        step = fold * cfg.train.epochs + int(event["epoch"])
        trial.report(float(event["val_loss"]) / zero_loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at fold {fold} epoch {event['epoch']}")
        if time.monotonic() > deadline:
            trial.set_user_attr("timed_out", True)
            raise optuna.TrialPruned(f"over --trial-timeout at fold {fold} epoch {event['epoch']}")

    return hook


def fold_ratio(scored: ScoredModel) -> float:
    """MAE of the model / MAE of naive on a fold's test part (1 - skill)."""
    test = scored.test_scores
    return float(test["model"]["mae"] / test["naive"]["mae"])


def make_objective(series: Series, search: Search) -> Callable[[Any], float]:
    """The objective over ``series``'s development part only (its test part is cut off here, once)."""
    data = Config.from_overrides(search.base).data
    dev = past_of(series, make_split(series.closes.size, data).val_end)  # the test part goes no further
    prefixes = dev_folds(dev.closes.size, data, search.folds)
    fixed_window = search.base.get("window")
    max_window = window_bound(prefixes[0], data, fixed_window)

    def objective(trial: optuna.Trial | optuna.trial.FixedTrial) -> float:
        params = suggest(trial, search.base, max_window)
        trial.set_user_attr("params", params)
        trial.set_user_attr("shard", search.shard)  # which process ran it (a distributed job's report)
        cfg = Config.from_overrides(params)
        deadline = time.monotonic() + (search.trial_timeout or math.inf)
        ratios = []
        for k, n in enumerate(prefixes):
            fold = past_of(dev, n)
            hook = _pruning_hook(trial, k, cfg, fold, deadline)
            ratios.append(fold_ratio(fit_and_score(fold, cfg, progress=hook, quiet=True)))
        trial.set_user_attr("fold_ratios", ratios)
        return float(sum(ratios) / len(ratios))

    return objective


def search_state(study: optuna.Study, trials: int) -> dict[str, Any]:
    """Where the search stands: the study's trials finished (completed + pruned) of those asked (every
    shard's: the study is shared), pruned, best value."""
    complete = optuna.trial.TrialState.COMPLETE
    done = [t.value for t in study.trials if t.state == complete and t.value is not None]
    pruned = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    return {"trials_done": len(done) + pruned, "trials": trials, "trials_pruned": pruned,
            "best_value": min(done) if done else None}  # fmt: skip


def _progress_bar(search: Search, total: int, before: int) -> tuple[tqdm[Any], Callable[[Any, Any], None]]:
    """A bar over this run's ``total`` trials; with ``search.progress``, one event per trial finished (a
    resumed study's ``before`` earlier trials do not count as done)."""
    bar: tqdm[Any] = tqdm(total=total, desc="trials", unit="trial", disable=search.quiet)

    def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        state = search_state(study, total)
        best = state["best_value"]
        bar.set_postfix(best="-" if best is None else f"{best:.4f}", pruned=state["trials_pruned"])
        if search.progress and search.budget is not None:  # shards: the whole study against its budget
            search.progress({"phase": "search", **search_state(study, search.budget)})
        elif search.progress:
            this_run = len(study.trials) - before
            search.progress({"phase": "search", **state, "trials_done": this_run})

    return bar, on_trial


def run_search(series: Series, search: Search) -> optuna.Study:
    """Run (or resume: same study name and storage) the search; returns the study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = make_objective(series, search)  # refuses unusable data before the first trial
    study_file = sqlite_file(search.storage)
    if study_file is not None:
        study_file.parent.mkdir(parents=True, exist_ok=True)
    seed = int(search.base.get("seed") or 0) + SHARD_SEED_STEP * search.shard
    study = optuna.create_study(  # the first shard creates it; the others load it (load_if_exists)
        study_name=search.study,
        storage=rdb_storage(search.storage, search.heartbeat, search.grace),
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + len_trials(search)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    n_trials, callbacks = search.trials, []
    if search.stage == "refit":  # the shards have searched: only the refit of the study's best is left
        n_trials = 0
    elif search.budget is not None:  # shards share one budget: each stops once the study has reached it
        n_trials = max(0, search.budget - len(study.get_trials(deepcopy=False, states=FINISHED)))
        callbacks.append(MaxTrialsCallback(search.budget, states=FINISHED))
    _say_resumed(study, search)
    bar, on_trial = _progress_bar(search, n_trials, before=len(study.trials))
    try:
        if n_trials:
            study.optimize(
                objective,
                n_trials=n_trials,
                timeout=search.timeout,
                callbacks=[*callbacks, on_trial],
                n_jobs=search.jobs,
            )
    finally:
        bar.close()
    return study


def len_trials(search: Search) -> int:
    """Trials already in the study (so a resumed search does not replay the same random start). A server
    database's engine is disposed of after: its pooled connection would stay open beside the search's."""
    storage = rdb_storage(search.storage, search.heartbeat, search.grace)
    try:
        return len(optuna.load_study(study_name=search.study, storage=storage).trials)
    except KeyError:
        return 0
    finally:
        if not isinstance(storage, str):
            storage.engine.dispose()


def _say_resumed(study: optuna.Study, search: Search) -> None:
    """A study that already has trials is continued, not restarted: say so on stderr, with where it is."""
    if study.trials:
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        print(
            f"resuming study {search.study!r} in {redact(search.storage)}: {len(study.trials)} trials "
            f"already ({finished} finished); a new --study name starts afresh",
            file=sys.stderr,
        )


def tuning_section(study: optuna.Study, search: Search, seconds: float) -> dict[str, Any]:
    """The bundle's ``manifest["tuning"]``."""
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    best = study.best_trial
    return {
        "n_trials": complete + pruned,
        "n_complete": complete,
        "n_pruned": pruned,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.user_attrs["params"],
        "best_fold_ratios": best.user_attrs.get("fold_ratios"),
        "objective": OBJECTIVE,
        "folds": search.folds,
        "fixed": sorted(k for k, v in search.base.items() if v is not None),
        "search_space": SEARCH_SPACE,
        "sampler": "TPE",
        "pruner": "median, on per-epoch validation loss relative to the drift-only forecast",
        "study": search.study,
        "storage": redact(search.storage),
        "search_seconds": round(seconds, 3),
    }


def best_config(study: optuna.Study) -> Config:
    """The best trial's whole configuration, or a ValueError when no trial completed."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        pruned = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
        raise ValueError(
            f"no trial of study {study.study_name!r} completed ({pruned} pruned); "
            "give the search more --trials, --timeout or --trial-timeout"
        )
    return Config.from_overrides(study.best_trial.user_attrs["params"])


def tune(series: Series, search: Search, out: Path, *, force: bool = False) -> dict[str, Any]:
    """Search, refit the best configuration on the whole series, write the bundle; returns its manifest."""
    from training.pipeline import export_bundle
    from training.tune_report import write_history

    started = time.perf_counter()
    study = run_search(series, search)
    seconds = time.perf_counter() - started if search.stage != "refit" else trials_span(study)
    config = best_config(study)
    refit = None
    if search.progress:
        asked = search.budget or search.trials
        report, state = search.progress, {"phase": "refit", **search_state(study, asked)}

        def refit(event: dict[str, Any]) -> None:
            report({**state, **event})

    scored = fit_and_score(series, config, quiet=search.quiet, progress=refit)
    study_file = sqlite_file(search.storage)
    kept = study_file if study_file is not None and study_file.parent == out.resolve() else None

    def extra(tmp: Path) -> None:
        write_history(tmp / "tuning.png", study)
        if kept is not None:  # the study lives in --out: it stays with the bundle (hashed like its files)
            shutil.copyfile(kept, tmp / kept.name)

    return export_bundle(
        scored,
        out,
        force=force or only_study_files(out, kept),
        tuning=tuning_section(study, search, seconds),
        write_extra=extra,
    )


def trials_span(study: optuna.Study) -> float:
    """Seconds from the study's first trial start to its last trial end (a refit-only run's search time:
    the shards' trials, run by other processes)."""
    starts = [t.datetime_start for t in study.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
