"""The hyperparameter flags of ``train`` and ``tune``, made from the config's field metadata (``hp`` in
``closecast/config.py``): one ``--kebab-name`` flag per field declared with ``cli=True``.

Every flag's argparse default is None, so a flag not given leaves the config's own default (and ``tune``
searches it); the help shows that default and the bounds. The values themselves are checked by the config
(its ``__post_init__``), so a bad one gets the same one-line message as from ``/train``, and exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from closecast.config import SECTIONS
from closecast.hparams import Param, declared


def boolean(text: str) -> bool:
    """``true``/``false`` (and 1/0, yes/no): the form ``/train`` jobs pass a boolean param in."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value


def cli_params(sections: tuple[type, ...] = SECTIONS) -> list[Param]:
    """The hyperparameters that are flags, in declaration order."""
    return [p for p in declared(sections) if p.meta.cli]


def flag_help(param: Param) -> str:
    """The help text: what it is, its bounds or choices, its default (``%`` escaped for argparse)."""
    parts = [param.meta.help]
    if param.meta.range_text():
        parts.append(param.meta.range_text())
    if param.kind == "names":
        parts.append(f"comma-separated, among {','.join(param.choices)}")
    if param.kind == "bool":
        parts.append(f"--{param.name.replace('_', '-')}=false says no")
    return f"{', '.join(parts)} (default {param.default_text})".replace("%", "%%")


def add_hyperparameter_flags(p: argparse.ArgumentParser, sections: tuple[type, ...] = SECTIONS) -> None:
    """One flag per hyperparameter: ``window`` is ``--window``; the type from the field's annotation."""
    for param in cli_params(sections):
        options: dict[str, Any] = {"default": None, "help": flag_help(param)}
        kind = param.kind
        if kind in ("int", "float"):
            options["type"] = int if kind == "int" else float
        elif kind == "bool":  # --flag alone is true; --flag=false says no
            options.update(type=boolean, nargs="?", const=True, metavar="BOOL")
        elif kind == "choice":
            options["choices"] = list(param.choices)
        p.add_argument("--" + param.name.replace("_", "-"), **options)


def given(args: argparse.Namespace, sections: tuple[type, ...] = SECTIONS) -> dict[str, Any]:
    """The hyperparameter flags given on the command line, by field name."""
    names = (p.name for p in cli_params(sections))
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
