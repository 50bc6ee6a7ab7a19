"""The ``/train`` params model, made from the config's field metadata (``hp`` in ``closecast/config.py``):
one optional field per hyperparameter declared with ``api=True``, typed from the dataclass annotation.

The bounds are stated in the schema only (``minimum``, ``exclusiveMaximum``...): the values are checked by
``closecast.config`` itself when the intake builds the job's configuration, so a bad one gets the CLI's own
message (``window is 2; it must be in [3, 1000] closes``), and the schema never promises what the check
refuses (both read the same metadata).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from app.api.schemas import WholeNumber
from closecast.config import SECTIONS
from closecast.features import split_names
from closecast.hparams import Param, declared

_LITERAL: Any = Literal  # subscripted with a field's names at run time
_LIST: Any = list
_JSON_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


class ParamsBase(BaseModel):
    """Hyperparameters, all optional (defaults: `python -m training train --help`); one per CLI flag."""

    model_config = ConfigDict(extra="forbid")

    def overrides(self) -> dict[str, Any]:
        """The parameters that were set, by name."""
        return self.model_dump(exclude_none=True)


def _comma_list(value: Any) -> Any:
    """A form field (and the CLI) say ``high,low``; JSON says ``["high", "low"]``."""
    return list(split_names(value)) if isinstance(value, str) else value


def _annotation(param: Param) -> Any:
    """The wire type: whole numbers may be sent as ``21.0``; a tuple of names is a list (or ``a,b``)."""
    kind, listed = param.kind, _LIST
    literal: Any = _LITERAL[param.choices] if param.choices else None
    if kind == "int":
        return Annotated[int | None, WholeNumber]
    if kind == "names":
        return Annotated[listed[literal] | None, BeforeValidator(_comma_list)]
    if kind == "choice":
        return literal | None
    plain = {"float": float, "bool": bool, "str": str}[kind]
    return plain | None


def description(param: Param) -> str:
    """What the field is, its bounds or names, and the default the config fills in when it is absent."""
    meta = param.meta
    parts = [meta.help, *([meta.range_text()] if meta.range_text() else [])]
    if param.kind == "names":
        parts.append(f"among {', '.join(param.choices)}; a form field takes `{','.join(param.choices[:2])}`")
    return f"{', '.join(parts)} (default {param.default_text})"


def _field(param: Param) -> Any:
    extra: dict[str, Any] = {_JSON_BOUNDS[k]: v for k, v in param.meta.bounds().items()}
    return Field(
        default=None,
        description=description(param),
        json_schema_extra=extra or None,
        max_length=len(param.choices) if param.kind == "names" else None,
    )


def params_model(
    name: str, base: type[ParamsBase], sections: tuple[type, ...] = SECTIONS
) -> type[ParamsBase]:
    """A pydantic model with one optional field per ``api=True`` hyperparameter of ``sections``."""
    definitions: dict[str, Any] = {
        p.name: (_annotation(p), _field(p)) for p in declared(sections) if p.meta.api
    }
    model: type[ParamsBase] = create_model(name, __base__=base, __module__=base.__module__, **definitions)
    model.__doc__ = base.__doc__
    return model
