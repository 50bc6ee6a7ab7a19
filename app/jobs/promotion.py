"""The promotion gate's decision, registering a job's new bundle, and making a version current (job promotion
and ``POST /models/{version}/promote``).

A candidate is judged on its own test part (``gate.py`` scores it: the candidate and the current model each
forecast every test close one step ahead from their own window of history), and ``promote=auto`` makes the
candidate current only if the gate's test allows it (``GateRule``: by default, a one-sided Diebold–Mariano
test does not find it worse at ``CLOSECAST_GATE_ALPHA``; ``CLOSECAST_GATE=superior``: it finds it better),
it is not the same model (identical forecasts), it learned something (not ``untrained``), and the model it
was compared with is still current when the job promotes. Making a version current is: verified bundle in
memory, then ``set_current`` (every worker follows the pointer), then ``swap`` (this worker at once).

``judge_and_register`` is the whole last step of a job as a plain function (no subprocess, no store): verify
the candidate bundle, judge it, rename it into the registry, promote it if judged so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.inference.holder import ModelHolder
from app.jobs.errors import CurrentIsNot, os_reason
from app.jobs.gate import IDENTICAL_TOLERANCE, GateScores, JobData, compare_on_test_part
from app.storage.job_store import CANCELLED, Outcome
from closecast import pointer_store, registry, retention
from closecast.bundle import load_forecaster
from closecast.errors import ClosecastError, TooManyModels
from closecast.forecaster import Forecaster
from closecast.objectstore import StoreRegistry
from closecast.scoring import is_untrained

log = logging.getLogger(__name__)


def promotion_lock(pointers: pointer_store.PointerStore, root: Path) -> AbstractContextManager[None]:
    """The one lock of every registry change (promotions, deletions, retention, a new model), for every model,
    as the pointer store holds it (``PointerStore.change_lock``: a lock file in ``root`` for the files)."""
    return pointers.change_lock()


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class GateRule:
    """What ``promote=auto`` asks of a candidate: ``not_worse`` (a one-sided Diebold-Mariano test does not
    find it worse at ``alpha``) or ``superior`` (the test finds it better at ``alpha``)."""

    test: str = "not_worse"
    alpha: float = 0.05


UNTRAINED = (
    "the candidate is untrained: no epoch beat its starting weights on the validation loss (best epoch 0)"
)


def _scores(ev: GateScores) -> str:
    other = "current" if ev.against == "current" else "the default model"
    return (
        f"candidate MAE {ev.candidate_mae:.6g} vs {other} ({ev.current_version}) MAE {ev.current_mae:.6g} "
        f"on the {ev.n} test closes (naive MAE {ev.naive_mae:.6g}); one-sided Diebold-Mariano test on "
        f"absolute errors (Newey-West lag {ev.dm_lag}): DM {ev.dm_stat:.3f}, p(better) "
        f"{ev.dm_pvalue_better:.3g}, p(worse) {ev.dm_pvalue_worse:.3g}"
    )


def _by_test(ev: GateScores, rule: GateRule) -> Decision:
    """``promote=auto`` on a comparable, trained candidate: identical refused, then the rule's test."""
    scores = _scores(ev)
    if ev.identical:
        return Decision(
            False,
            f"not promoted: the candidate is the same model as the current one (every forecast within "
            f"{IDENTICAL_TOLERANCE:g} of it on the test part; Diebold-Mariano DM {ev.dm_stat:.3f}, "
            f"p {ev.dm_pvalue_better:.3g}); {scores}",
        )
    if rule.test == "superior":
        if ev.dm_pvalue_better < rule.alpha:
            return Decision(True, f"promoted: the candidate is better at the {rule.alpha:g} level; {scores}")
        return Decision(
            False,
            f"not promoted: the candidate is not better at the {rule.alpha:g} level (gate: superior); "
            f"{scores}",
        )
    if ev.dm_pvalue_worse < rule.alpha:
        return Decision(False, f"not promoted: the candidate is worse at the {rule.alpha:g} level; {scores}")
    return Decision(True, f"promoted: the candidate is not worse at the {rule.alpha:g} level; {scores}")


def first_version(
    mode: str, model: str, version: str, ev: GateScores | None, why: str = "", untrained: bool = False
) -> Decision:
    """A new model's first version: there is no incumbent, so it becomes current unless ``never``, even when
    untrained (refusing it would leave the name with nothing to serve; the reason and its card say so); the
    scores against naive and the default model tell whether the model is worth keeping."""
    scores = _scores(ev) if ev is not None else f"could not compare it with the default model ({why})"
    if untrained:
        scores = f"{UNTRAINED}; {scores}"
    if mode == "never":
        return Decision(
            False,
            f"promote=never: registered only, model {model!r} has no current version yet "
            f"(POST /models/{model}/versions/{version}/promote makes it current); {scores}",
        )
    return Decision(True, f"first version of model {model!r}: made current (no incumbent); {scores}")


def decide(mode: str, ev: GateScores, rule: GateRule = GateRule(), untrained: bool = False) -> Decision:
    """``auto``: refuse an untrained candidate or the same model, else ask ``rule``'s Diebold-Mariano test;
    ``always`` / ``never`` as they say."""
    scores = _scores(ev)
    if mode == "always":
        return Decision(True, f"promote=always: made current; {scores}")
    if mode == "never":
        return Decision(False, f"promote=never: registered only; {scores}")
    if untrained:
        return Decision(False, f"not promoted: {UNTRAINED}; {scores}")
    return _by_test(ev, rule)


def undecided(mode: str, version: str, why: str, model: str = "default") -> Decision:
    """When the two models cannot be compared: ``always`` still promotes; ``auto`` keeps the current one."""
    problem = f"could not compare the candidate with the current model ({why})"
    if mode == "always":
        return Decision(True, f"promote=always: made current; {problem}")
    if mode == "never":
        return Decision(False, f"promote=never: registered only; {problem}")
    return Decision(
        False, f"not promoted: {problem}; POST /models/{model}/versions/{version}/promote makes it current"
    )


def current_moved(ev: GateScores, now: str | None, version: str, model: str = "default") -> Decision:
    """``auto`` judged the candidate against a model that stopped being current before it could promote."""
    return Decision(
        False,
        f"not promoted: the current model changed from {ev.current_version} to {now} during the job, so the "
        f"candidate was never compared with {now}; {_scores(ev)}; "
        f"POST /models/{model}/versions/{version}/promote makes it current",
    )


def current_model(holder: ModelHolder) -> Forecaster:
    """The model the pointer names: the one served when it is the same, else loaded and verified."""
    served = holder.current
    pointed = holder.pointers.current(holder.model)
    if served is not None and (pointed is None or served.version == pointed):
        return served
    return holder.load_current()


class CurrentChanged(Exception):
    """The pointer no longer names the model the gate compared the candidate with."""

    def __init__(self, judged_against: str, now: str | None) -> None:
        self.judged_against = judged_against
        self.now = now
        super().__init__(f"the current model changed from {judged_against} to {now} during the job")


def make_current(
    holder: ModelHolder,
    forecaster: Forecaster,
    judged_against: str | None = None,
    reason: str = "",
    if_match: str | None = None,
) -> str | None:
    """Point ``current`` at a verified, registered bundle and serve it here at once; returns the previous
    version, read where the pointer is written (in PostgreSQL: inside the promotion's transaction), so it is
    the history's ``previous`` even when another replica promotes at the same moment. In-flight requests
    finish on the model they started with; other workers follow the pointer.

    With ``judged_against`` (the version the gate compared it with) it raises ``CurrentChanged`` and changes
    nothing when the pointer names another version by now: a win over a model that is no longer current
    says nothing about the one that is. With ``if_match`` (a caller's ``If-Match``: the version it believes
    current) it raises ``CurrentIsNot`` and changes nothing when the pointer names another one.
    """
    expected: tuple[str, ...] = ()
    if judged_against is not None:
        expected = (judged_against, forecaster.version)
    elif if_match is not None:
        expected = (if_match,)
    with promotion_lock(holder.pointers, holder.registry_root):
        try:  # compared again where the pointer is written: PostgreSQL replicas share no file lock
            previous = holder.pointers.promote(holder.model, forecaster.version, reason, expected)
        except pointer_store.PointerMoved as exc:
            if judged_against is None:
                raise CurrentIsNot(holder.model, str(if_match), exc.now) from None
            raise CurrentChanged(judged_against, exc.now) from None
        holder.swap(forecaster)
    return previous


def promote_version(holder: ModelHolder, version: str, if_match: str | None = None) -> str | None:
    """Load and fully verify a stored version, then make it current (only while ``if_match`` is current,
    when given); ``BundleInvalid`` and ``CurrentIsNot`` change nothing."""
    forecaster = holder.load_version(version)
    return make_current(
        holder,
        forecaster,
        reason=f"promoted through POST /models/{holder.model}/versions/{version}/promote",
        if_match=if_match,
    )


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RegistryRules:
    """What a job's registration obeys besides the gate: the default model a new model's first version is
    compared with, the cap on model names, the retention of never-promoted versions."""

    default: ModelHolder | None = None
    max_models: int | None = None
    keep_versions: int | None = None
    gate: GateRule = GateRule()


def _judge(
    holder: ModelHolder,
    candidate: Forecaster,
    mode: str,
    load_closes: Callable[[], JobData],
    rules: RegistryRules,
) -> tuple[GateScores | None, Decision, bool]:
    """The gate's scores and decision, and whether this is the model's first version (no incumbent)."""
    first = not holder.pointers.candidates(holder.model)
    untrained = is_untrained(candidate.manifest)
    gate: GateScores | None = None
    try:
        if first:
            if rules.default is None or rules.default is holder:
                decision = first_version(
                    mode, holder.model, candidate.version, None, "none configured", untrained
                )
                return None, decision, True
            gate = compare_on_test_part(candidate, current_model(rules.default), load_closes(), "default")
            return gate, first_version(mode, holder.model, candidate.version, gate, "", untrained), True
        gate = compare_on_test_part(candidate, current_model(holder), load_closes())
        return gate, decide(mode, gate, rules.gate, untrained), False
    except (ClosecastError, OSError, ValueError, KeyError) as exc:
        if first:
            return None, first_version(mode, holder.model, candidate.version, None, str(exc), untrained), True
        return None, undecided(mode, candidate.version, str(exc), holder.model), False


def judge_and_register(
    holder: ModelHolder,
    bundle: Path,
    mode: str,
    load_closes: Callable[[], JobData],
    cancel_requested: Callable[[], bool] = _never,
    rules: RegistryRules = RegistryRules(),
    phase: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Blocking: verify the candidate ``bundle`` (a directory beside the registry, named as its version),
    judge it against its model's current version on ``load_closes()`` (the closes it was trained on; a new
    model's first version against the default model), register it (rename into ``holder.model_dir``) and
    make it current if ``mode`` and the gate say so.

    Anything that goes wrong before the rename leaves the registry and the served model as they were; a
    cancel request is honoured up to the rename. The outcome's result says whether it was promoted and why.
    ``phase`` hears ``judging`` and ``promoting`` (registering, then making current if judged so) at their
    start.
    """
    phase("judging")
    try:
        candidate = load_forecaster(bundle, holder.providers, holder.ort_threads)
    except (ClosecastError, OSError) as exc:
        return Outcome("failed", error=f"the new bundle failed verification and was discarded: {exc}")
    gate, decision, first = _judge(holder, candidate, mode, load_closes, rules)
    result: dict[str, Any] = {
        "model": holder.model,
        "version": candidate.version,
        "metrics": {
            "test": candidate.manifest.get("metrics", {}).get("test"),
            "gate": gate.as_dict() if gate else None,
        },
        "promoted": False,
        "reason": decision.reason,
        "untrained": is_untrained(candidate.manifest),
    }
    if cancel_requested():
        return Outcome("cancelled", error=f"{CANCELLED} before the new version was registered")
    phase("promoting")
    try:
        register(holder, bundle, rules.max_models)
    except TooManyModels as exc:
        return Outcome("failed", error=exc.message)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__  # the reason, never the path
        return Outcome("failed", error=f"could not register {bundle.name} in the registry: {why}")
    outcome = Outcome("succeeded", result=result)
    if decision.promote:
        judged = gate if mode == "auto" and not first else None
        outcome = _promote_registered(holder, candidate, judged, result)
    if rules.keep_versions is not None:
        _prune(holder, rules.keep_versions)
    return outcome


def _prune(holder: ModelHolder, keep: int) -> None:
    try:
        with promotion_lock(holder.pointers, holder.registry_root), holder.pointers.model_lock(holder.model):
            bundles: StoreRegistry | None = getattr(holder.pointers, "bundles", None)
            if bundles is None:
                removed = retention.prune_versions(holder.model_dir, keep, holder.pointers)
            else:  # an object store: its versions, not this cache's, and removed from it for every replica
                protected = retention.protected_versions(holder.model_dir, holder.pointers)
                removed = retention.beyond_retention(bundles.versions(holder.model), keep, protected)
                for version in removed:
                    bundles.delete_version(holder.model, version)
    except OSError as exc:  # retention is housekeeping: the job itself succeeded
        log.warning("could not prune old versions of model %s: %s", holder.model, exc.strerror or exc)
        return
    if removed:
        log.info("pruned never-promoted versions of model %s: %s", holder.model, ", ".join(removed))


def _promote_registered(
    holder: ModelHolder, candidate: Forecaster, judged: GateScores | None, result: dict[str, Any]
) -> Outcome:
    """Make the registered candidate current; with ``judged`` only while that model is still current."""
    try:
        judged_against = judged.current_version if judged is not None else None
        make_current(holder, candidate, judged_against, reason=f"job: {result['reason']}")
    except CurrentChanged as exc:
        assert judged is not None  # only an `auto` promotion judged against a model checks the pointer
        moved = current_moved(judged, exc.now, candidate.version, holder.model)
        return Outcome("succeeded", result={**result, "reason": moved.reason})
    except (OSError, ValueError) as exc:
        return Outcome(
            "failed",
            result=result,
            error=f"registered {candidate.version} but could not make it current: {os_reason(exc)}",
        )
    return Outcome("succeeded", result={**result, "promoted": True})


def _model_names(holder: ModelHolder) -> list[str]:
    """The names ``max_models`` counts: with an object store, the store's and the database's (the local
    directory is only a cache of them), else the registry directory's."""
    names = getattr(holder.pointers, "model_names", None)
    return names() if names is not None else registry.list_models(holder.registry_root)


def register(holder: ModelHolder, bundle: Path, max_models: int | None = None) -> None:
    """Rename a verified bundle into its model's directory (atomic: both live in the registry), creating
    the directory for a new model unless ``max_models`` names exist already (``TooManyModels``)."""
    model_dir = holder.model_dir
    if not model_dir.is_dir():
        with promotion_lock(holder.pointers, holder.registry_root):
            names = _model_names(holder)
            if max_models is not None and holder.model not in names and len(names) >= max_models:
                raise TooManyModels(holder.model, max_models)
            model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / bundle.name
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    # an object store: upload it for every replica BEFORE it enters this cache, so that a cached version
    # is always one the store has (a cached one the store lacks was deleted, and is dropped on listing)
    publish = getattr(holder.pointers, "publish", None)
    if publish is not None:
        publish(holder.model, bundle.name, bundle)
    os.rename(bundle, target)
