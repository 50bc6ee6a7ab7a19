"""The Optuna search space, made from the config's field metadata: every field declared with
``hp(..., search=Span(...) | OneOf(...))`` in ``closecast/config.py`` is a dimension, suggested in declaration
order (which fixes the sampler's draws for a seed).

A parameter given as a flag is fixed instead of searched. ``Span(..., above=("num_layers", 1))`` is searched
only while that parameter is above 1; otherwise the field keeps its default (dropout needs a stack).
"""

from __future__ import annotations

from typing import Any

import optuna

from closecast.config import SECTIONS
from closecast.hparams import OneOf, Param, Span, declared


def searched(sections: tuple[type, ...] = SECTIONS) -> list[Param]:
    """The hyperparameters with a search range, in declaration order."""
    return [p for p in declared(sections) if p.meta.search is not None]


def search_space(sections: tuple[type, ...] = SECTIONS) -> dict[str, list[Any]]:
    """As the manifest records it: ``{"window": [11, 121], "lr": [0.0001, 0.01, "log"], "loss": [...]}``."""
    return {p.name: _search_of(p).listed() for p in searched(sections)}


def span(name: str, sections: tuple[type, ...] = SECTIONS) -> tuple[int, int]:
    """A whole-number field's search range (``window``: the largest a fold can train with is found in it)."""
    search = next(_search_of(p) for p in searched(sections) if p.name == name)
    assert isinstance(search, Span), name
    return int(search.low), int(search.high)


def _search_of(p: Param) -> Span | OneOf:
    """A searched parameter's range (``searched`` keeps only those with one)."""
    assert p.meta.search is not None, p.name
    return p.meta.search


def suggest(
    trial: optuna.Trial | optuna.trial.FixedTrial,
    base: dict[str, Any],
    max_window: int,
    sections: tuple[type, ...] = SECTIONS,
) -> dict[str, Any]:
    """The trial's hyperparameters: flags given on the command line are fixed, the rest are searched
    (``window`` at most ``max_window``, the largest the smallest fold can train with)."""
    params = dict(base)
    for p in searched(sections):
        if params.get(p.name) is None:
            params[p.name] = _draw(trial, p, params, {"window": max_window}.get(p.name), sections)
    return {k: v for k, v in params.items() if v is not None}


def _draw(trial: Any, p: Param, params: dict[str, Any], cap: int | None, sections: tuple[type, ...]) -> Any:
    search = p.meta.search
    if isinstance(search, OneOf):
        return trial.suggest_categorical(p.name, list(search.options))
    assert isinstance(search, Span)
    if search.above is not None:
        other, threshold = search.above
        if params.get(other, _default(other, sections)) <= threshold:
            return p.default
    if p.kind == "int":
        high = int(search.high) if cap is None else min(int(search.high), cap)
        return trial.suggest_int(p.name, int(search.low), high, log=search.log)
    return trial.suggest_float(p.name, search.low, search.high, log=search.log)


def _default(name: str, sections: tuple[type, ...]) -> Any:
    return next(p.default for p in declared(sections) if p.name == name)
