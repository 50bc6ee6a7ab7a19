"""One declaration per hyperparameter: ``hp(default, help, bounds, search=...)`` on a config dataclass field.

The dataclasses in ``closecast/config.py`` say each hyperparameter once, with its default, a help text, its
bounds and its search range; everything else is made from that metadata, so a new field is one line:

- its check (``check_fields``, called by each ``__post_init__``): the value quoted and the bound stated;
- its CLI flag (``training/flags.py``), its ``/train`` param (``app/api/params_model.py``, pydantic), and
  its Optuna search dimension (``training/search_space.py``).

Standard library only: the core never imports argparse, pydantic or optuna (the wings read this metadata).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar, get_args, get_origin

KEY = "closecast.hparam"
T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """A search range ``low..high`` (whole numbers for an ``int`` field), log-uniform with ``log``; with
    ``above=("num_layers", 1)`` searched only while that parameter is above 1 (else the field's default)."""

    low: float
    high: float
    log: bool = False
    above: tuple[str, float] | None = None

    def listed(self) -> list[Any]:
        """As a manifest records the search space: ``[low, high]`` or ``[low, high, "log"]``."""
        return [self.low, self.high, *(["log"] if self.log else [])]


@dataclass(frozen=True)
class OneOf:
    """A search over these values, in this order."""

    options: tuple[Any, ...]

    def listed(self) -> list[Any]:
        return list(self.options)


@dataclass(frozen=True)
class Meta:
    """What ``hp`` records on a field. ``cli``/``api``: whether the field is a ``python -m training`` flag
    and a ``/train`` param (a field with neither is still checked and saved in every manifest)."""

    help: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    unit: str = ""  # said after the range in a refusal: "window is 2; it must be in [3, 1000] closes"
    items: tuple[str, ...] = ()  # a tuple-of-names field: the names allowed (the CLI takes "a,b")
    search: Span | OneOf | None = None
    cli: bool = True
    api: bool = True

    def bounds(self) -> dict[str, float]:
        """The numeric bounds set, by pydantic's names (``ge``, ``gt``, ``le``, ``lt``)."""
        given = {"ge": self.ge, "gt": self.gt, "le": self.le, "lt": self.lt}
        return {k: v for k, v in given.items() if v is not None}

    def range_text(self) -> str:
        """``in [3, 1000]``, ``in (0, 1)``, ``>= 1`` or ``""`` (no bound)."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            return f"in {left}{_num(low)}, {_num(high)}{right}"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_num(low)}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {_num(high)}"
        return ""

    def within(self, value: float) -> bool:
        b = self.bounds()
        return not (
            ("ge" in b and value < b["ge"])
            or ("gt" in b and value <= b["gt"])
            or ("le" in b and value > b["le"])
            or ("lt" in b and value >= b["lt"])
        )


def hp(
    default: T,
    help: str,  # argparse's and pydantic's word for it
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    unit: str = "",
    items: tuple[str, ...] = (),
    search: Span | OneOf | None = None,
    cli: bool = True,
    api: bool = True,
) -> T:
    """A dataclass field declaring one hyperparameter: ``window: int = hp(21, "closes per input window",
    ge=3, le=1000, unit="closes", search=Span(11, 121))``. A search range outside the bounds is refused here,
    at import, so the search can never propose a value the check refuses."""
    meta = Meta(help, ge, gt, le, lt, unit, items, search, cli, api)
    candidates = [search.low, search.high] if isinstance(search, Span) else []
    candidates += [v for v in (search.options if isinstance(search, OneOf) else ()) if _is_number(v)]
    outside = [v for v in candidates if not meta.within(v)]
    if outside:
        raise ValueError(f"search value {outside[0]} of {help!r} is outside its bounds, {meta.range_text()}")
    return field(default=default, metadata={KEY: meta})


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter, resolved: its name, type, default and metadata."""

    name: str
    type: Any  # the resolved annotation: int, float, bool, str, str | None, a Literal, tuple[str, ...]
    default: Any
    meta: Meta

    @property
    def kind(self) -> str:
        """``int``, ``float``, ``bool``, ``str``, ``choice`` (a Literal) or ``names`` (a tuple of names)."""
        if get_origin(self.type) is typing.Literal:
            return "choice"
        if get_origin(self.type) is tuple:
            return "names"
        plain = [t for t in get_args(self.type) if t is not type(None)] or [self.type]
        return str(plain[0].__name__)

    @property
    def optional(self) -> bool:
        """Whether None is a valid value (``str | None``)."""
        return type(None) in get_args(self.type)

    @property
    def choices(self) -> tuple[Any, ...]:
        return get_args(self.type) if self.kind == "choice" else self.meta.items

    @property
    def default_text(self) -> str:
        """The default as help texts show it: ``none`` for None or no names, ``true``/``false`` for a bool."""
        if self.default in (None, ()):
            return "none"
        return str(self.default).lower() if self.kind == "bool" else str(self.default)

    def refusal(self, value: Any) -> str | None:
        """Why ``value`` is refused (the value quoted, the bound stated), or None when it is accepted."""
        if value is None and self.optional:
            return None
        kind, shown = self.kind, repr(value) if isinstance(value, str) else str(value)
        if kind == "bool" and not isinstance(value, bool):
            return f"{self.name} is {value!r}; it must be true or false"
        if kind == "choice" and value not in self.choices:
            *rest, last = (repr(c) for c in self.choices)
            return f"{self.name} is {value!r}; choose {', '.join(rest)} or {last}"
        if kind == "names":
            names = value if isinstance(value, tuple | list) else (value,)
            unknown = [n for n in names if n not in self.meta.items]
            if unknown:
                return f"{self.name} names {unknown[0]!r}; choose among {', '.join(self.meta.items)}"
        if kind in ("int", "float") and not self.meta.within(value):
            unit = f" {self.meta.unit}" if self.meta.unit else ""
            return f"{self.name} is {shown}; it must be {self.meta.range_text()}{unit}"
        return None


def params_of(cls: type) -> tuple[Param, ...]:
    """The hyperparameters a config dataclass declares with ``hp``, in declaration order (resolved once
    per class: every config object's check reads them)."""
    if cls not in _RESOLVED:
        hints = typing.get_type_hints(cls)
        _RESOLVED[cls] = tuple(
            Param(f.name, hints[f.name], f.default, f.metadata[KEY])
            for f in fields(cls)
            if KEY in f.metadata and f.default is not MISSING
        )
    return _RESOLVED[cls]


_RESOLVED: dict[type, tuple[Param, ...]] = {}


def declared(sections: tuple[type, ...]) -> Iterator[Param]:
    """Every hyperparameter of these sections, in order (the wings pass ``closecast.config.SECTIONS``)."""
    for section in sections:
        yield from params_of(section)


def check_fields(obj: Any) -> None:
    """Refuse, with a ``ValueError`` quoting the value, the first field outside what ``hp`` declared."""
    for param in params_of(type(obj)):
        why = param.refusal(getattr(obj, param.name))
        if why is not None:
            raise ValueError(why)


def _num(x: float) -> str:
    return str(x)  # as declared: 1000 stays 1000, 0.95 stays 0.95


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
