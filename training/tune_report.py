"""``tuning.png``: the optimisation history of a search (each trial's objective, the best so far, pruned
trials marked), for a human to see whether more trials would still help."""

from __future__ import annotations

from pathlib import Path

import optuna

from training.report import pyplot, whole_number_axis


def write_history(path: Path, study: optuna.Study) -> None:
    complete = [
        t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=80)
    numbers = [t.number for t in complete]
    values = [float(t.value) for t in complete if t.value is not None]
    ax.scatter(numbers, values, s=14, label="trial objective")
    best, running = [], float("inf")
    for v in values:
        running = min(running, v)
        best.append(running)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(
            [t.number for t in pruned], [max(values, default=1.0)] * len(pruned), marker="x", color="grey",
            label=f"pruned ({len(pruned)})",
        )  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="naive (1.0)")
    ax.set(
        title=f"study {study.study_name}: MAE / naive MAE over walk-forward folds",
        xlabel="trial",
        ylabel="objective (lower is better)",
    )
    whole_number_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
