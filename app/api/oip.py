"""The Open Inference Protocol's (KServe v2) REST tensors: an infer request in, its answer out.

A request is a JSON header, optionally followed by the binary tensor data extension's raw bytes (little
endian, row major, in the order of the header's inputs; ``Inference-Header-Content-Length`` gives the
header's size). Each binary tensor becomes an array with ONE ``np.frombuffer`` call, each JSON tensor with one
``np.asarray``: no Python work per series or per close. The checks that ``/forecast/batch``'s schema makes per
close (finite and > 0) are made here on whole arrays, in the same words; the model's own checks run in the
core forecaster, as for ``/forecast/batch``. Plain functions: the routes are in ``routes/oip.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic_core import from_json, to_json

from closecast.errors import ClosecastError, InputInvalid, Problem, format_loc, render_value

F64 = npt.NDArray[np.float64]

# the datatypes a closes or feature tensor may have, as little-endian numpy dtypes
DATATYPES: dict[str, np.dtype[Any]] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
FEATURES = ("high", "low", "open", "volume")  # the feature inputs a model may read, besides closes
PARAMETERS = ("horizon", "levels", "binary_data_output", "dates")
DEFAULT_LEVELS = (80, 95)
MAX_LEVELS = 10


class ProtocolInvalid(ClosecastError):
    """A request the protocol cannot read (answered 400, as the protocol's servers do)."""


@dataclass(frozen=True)
class InferRequest:
    """An infer request read: its tensors as float64 ``[N, T]`` arrays by input name, and its parameters."""

    id: str | None
    inputs: dict[str, F64]
    horizon: int
    levels: tuple[int, ...]
    outputs: tuple[tuple[str, bool | None], ...] | None  # (name, as binary or None: the default), None: all
    binary_output: bool  # the default of outputs that do not say (``binary_data_output``)
    dates: list[str] | None = None  # one per column of ``closes``, shared by every series

    @property
    def closes(self) -> F64:
        return self.inputs["closes"]

    def features(self) -> list[dict[str, F64]] | None:
        """Each series' feature rows (the core's per-series form), or None when only closes were sent."""
        sent = {name: values for name, values in self.inputs.items() if name != "closes"}
        if not sent:
            return None
        return [{name: values[i] for name, values in sent.items()} for i in range(len(self.closes))]


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request's body (and its ``Inference-Header-Content-Length``) -> ``InferRequest``.

    Raises ``ProtocolInvalid`` for a body the protocol cannot read, ``InputInvalid`` for closes or features
    that ``/forecast/batch`` would refuse too."""
    size = _header_size(header_length, len(body))
    header = _json_object(body[:size])
    binary = memoryview(body)[size:]
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolInvalid('inputs is missing; send "inputs": [{"name": "closes", ...}]')
    arrays: dict[str, F64] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        name, values, offset = _tensor(i, tensor, binary, offset)
        if name in arrays:
            raise ProtocolInvalid(f"inputs[{i}].name is {name!r} again; send each input once")
        arrays[name] = values
    if offset != len(binary):
        raise ProtocolInvalid(
            f"the body has {len(binary)} bytes of binary tensor data but the inputs' binary_data_size add up "
            f"to {offset}; send exactly the bytes the inputs declare"
        )
    _check_shapes(arrays)
    _check_values(arrays)
    parameters = _parameters(header.get("parameters"))
    levels = _levels(parameters.get("levels", list(DEFAULT_LEVELS)))
    return InferRequest(
        id=_request_id(header.get("id")),
        inputs=arrays,
        horizon=_horizon(parameters.get("horizon", 1)),
        levels=levels,
        outputs=_requested_outputs(header.get("outputs"), output_names(levels)),
        binary_output=_flag(parameters.get("binary_data_output", False), "parameters.binary_data_output"),
        dates=_dates(parameters.get("dates")),
    )


# --- the request's parts -----------------------------------------------------------------------------------


def _header_size(header_length: str | None, body_size: int) -> int:
    if header_length is None:
        return body_size  # no binary data: the whole body is the JSON header
    size = int(header_length) if header_length.strip().isdigit() else -1
    if not 0 < size <= body_size:
        raise ProtocolInvalid(
            f"Inference-Header-Content-Length is {header_length!r} but the body has {body_size} bytes; "
            "send the size of the JSON header in bytes"
        )
    return size


def _json_object(text: bytes) -> dict[str, Any]:
    try:
        header = from_json(text)
    except ValueError as exc:
        raise ProtocolInvalid(f"the request header is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(header, dict):
        raise ProtocolInvalid(f"the request header is {render_value(header)}; send a JSON object")
    return header


def _tensor(i: int, tensor: Any, binary: memoryview, offset: int) -> tuple[str, F64, int]:
    """``inputs[i]`` -> its name, its values as float64 ``[N, T]``, and the offset of the next binary one."""
    if not isinstance(tensor, dict):
        raise ProtocolInvalid(f"inputs[{i}] is {render_value(tensor)}; send a tensor object")
    name = tensor.get("name")
    if name != "closes" and name not in FEATURES:
        raise ProtocolInvalid(
            f"inputs[{i}].name is {render_value(name)}; send closes (and, for a model that reads them, "
            f"{', '.join(FEATURES)})"
        )
    datatype = tensor.get("datatype")
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise ProtocolInvalid(f"inputs[{i}].datatype is {render_value(datatype)}; send FP64 or FP32")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_whole(d) and d >= 1 for d in shape)):
        raise ProtocolInvalid(
            f"inputs[{i}].shape is {render_value(shape)}; send [N, T]: N series of T closes each, both >= 1"
        )
    count = shape[0] * shape[1]
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolInvalid(f"inputs[{i}].parameters is {render_value(parameters)}; send an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        values = _binary(i, size, count * dtype.itemsize, binary, offset, dtype)
        offset += count * dtype.itemsize
    elif "data" in tensor:
        values = _json_data(i, tensor["data"], count, dtype)
    else:
        raise ProtocolInvalid(f"inputs[{i}] has neither data nor parameters.binary_data_size; send one")
    return name, values.reshape(shape), offset


def _binary(i: int, size: Any, expected: int, binary: memoryview, offset: int, dtype: np.dtype[Any]) -> F64:
    if not _whole(size) or size != expected:
        raise ProtocolInvalid(
            f"inputs[{i}].parameters.binary_data_size is {render_value(size)} but its shape and datatype "
            f"make {expected} bytes; send {expected}"
        )
    if offset + expected > len(binary):
        raise ProtocolInvalid(
            f"inputs[{i}] needs {expected} bytes of binary data from byte {offset} but the body has only "
            f"{len(binary)} after the header; send every input's bytes"
        )
    # one vectorised read; astype copies into an aligned native float64 array the model code may keep
    values = np.frombuffer(binary, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    return values.astype(np.float64)


def _json_data(i: int, data: Any, count: int, dtype: np.dtype[Any]) -> F64:
    """JSON tensor data, flat (as the protocol writes it) or nested, in row-major order."""
    try:
        values = np.asarray(data)
    except ValueError:  # ragged nesting
        values = np.asarray(None)
    if values.dtype.kind not in "fiu" or values.size != count:
        raise ProtocolInvalid(
            f"inputs[{i}].data is {render_value(data)}; send {count} numbers (the shape's product), "
            "flat in row-major order"
        )
    # FP32 data is rounded to float32 first, as its binary form would be
    return values.astype(dtype).astype(np.float64).reshape(-1)


def _check_shapes(arrays: Mapping[str, F64]) -> None:
    closes = arrays.get("closes")
    if closes is None:
        raise ProtocolInvalid(f"inputs lack closes; send closes [N, T] (and {', '.join(FEATURES)} if read)")
    for name, values in arrays.items():
        if values.shape != closes.shape:
            raise ProtocolInvalid(
                f"input {name} has shape {list(values.shape)} but closes has {list(closes.shape)}; "
                "send every input with the same shape, one value per close"
            )


def _check_values(arrays: Mapping[str, F64]) -> None:
    """The per-value rules of ``/forecast/batch``'s schema, on whole arrays: closes finite and > 0, features
    finite and >= 0 (a feature price of 0 is refused by the core). Names the first few bad values."""
    problems: list[Problem] = []
    for name, values in arrays.items():
        floor_ok = values > 0 if name == "closes" else values >= 0
        bad = ~(np.isfinite(values) & floor_ok)
        if not bad.any():
            continue
        for row, col in np.argwhere(bad)[:10].tolist():
            value = float(values[row, col])
            problems.append(_bad_value(name, row, col, value))
    if problems:
        raise InputInvalid(problems)


def _bad_value(name: str, row: int, col: int, value: float) -> Problem:
    if name == "closes":
        loc: tuple[str | int, ...] = ("body", "series", row, "closes", col)
        rule = "prices must be finite numbers" if not np.isfinite(value) else "prices must be > 0"
        kind = "price_not_finite" if not np.isfinite(value) else "price_not_positive"
    else:
        loc = ("body", "series", row, "features", name, col)
        rule = (
            "a volume must be finite and >= 0"
            if name == "volume"
            else f"a {name} price must be finite and > 0"
        )
        kind = "feature_invalid"
    return Problem(loc, f"{format_loc(loc)} is {render_value(value)}; {rule}", kind, value)


def _parameters(parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ProtocolInvalid(f"parameters is {render_value(parameters)}; send an object")
    for name in parameters:
        if name not in PARAMETERS:
            raise ProtocolInvalid(
                f"parameters.{name} is not a known parameter; send only {', '.join(PARAMETERS)}"
            )
    return parameters


def _horizon(value: Any) -> int:
    if not _whole(value) or value < 1:
        raise ProtocolInvalid(
            f"parameters.horizon is {render_value(value)}; send a whole number of steps >= 1"
        )
    return int(value)


def _dates(value: Any) -> list[str] | None:
    """``dates`` as a list of ISO strings or one comma-separated string (a parameter may only be a string in
    some clients); their checks against the closes are ``/forecast``'s (``app/api/dates.py``)."""
    if value is None:
        return None
    parsed = value.split(",") if isinstance(value, str) else value
    if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
        raise ProtocolInvalid(
            f"parameters.dates is {render_value(value)}; send ISO dates, one per close, as a list of strings "
            'or one comma-separated string ("2024-03-21,2024-03-22")'
        )
    return [v.strip() for v in parsed]


def _levels(value: Any) -> tuple[int, ...]:
    """``levels`` as a list of numbers, one number, or a comma-separated string (``"80,95"``): a parameter
    value is a string, number or bool in the protocol, and clients differ in what they send."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        parsed: list[Any] = [int(p) if p.isdigit() else p for p in parts]
    else:
        parsed = value if isinstance(value, list) else [value]
    if not (1 <= len(parsed) <= MAX_LEVELS and all(_whole(v) and 1 <= v <= 99 for v in parsed)):
        raise ProtocolInvalid(
            f"parameters.levels is {render_value(value)}; send 1 to {MAX_LEVELS} interval levels in percent, "
            'each 1..99, as a list or "80,95"'
        )
    levels = tuple(int(v) for v in parsed)
    if len(set(levels)) != len(levels):
        raise ProtocolInvalid(f"parameters.levels is {render_value(value)}; send each level once")
    return levels


def _requested_outputs(outputs: Any, names: list[str]) -> tuple[tuple[str, bool | None], ...] | None:
    """The outputs asked for, each one this request makes (checked before anything runs)."""
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise ProtocolInvalid(f"outputs is {render_value(outputs)}; send a list of {{'name': ...}}")
    asked: list[tuple[str, bool | None]] = []
    for i, output in enumerate(outputs):
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str):
            raise ProtocolInvalid(f"outputs[{i}] is {render_value(output)}; send {{'name': ...}}")
        if name not in names:
            raise ProtocolInvalid(
                f"outputs[{i}].name is {name!r}, which this request does not make; ask for {', '.join(names)}"
            )
        parameters = output.get("parameters") or {}
        binary = parameters.get("binary_data") if isinstance(parameters, dict) else None
        asked.append(
            (name, None if binary is None else _flag(binary, f"outputs[{i}].parameters.binary_data"))
        )
    return tuple(asked)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolInvalid(f"{where} is {render_value(value)}; send true or false")
    return value


def _request_id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ProtocolInvalid(f"id is {render_value(value)}; send a string")


def _whole(value: Any) -> bool:
    """A JSON whole number (``18`` or ``18.0``), never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


# --- the answer --------------------------------------------------------------------------------------------


def output_names(levels: Sequence[int]) -> list[str]:
    """The outputs an answer with these levels has, in order: the forecast, then each level's bounds."""
    return ["forecast", *(f"{side}_{level}" for level in levels for side in ("lower", "upper"))]


def encode_infer(
    request: InferRequest,
    prices: F64,
    model: str,
    version: str,
    warnings: list[tuple[int, str]],
    forecast_dates: list[str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The answer's body and headers. ``prices`` is the batch's ``[N, 1+2L, H]`` table (the forecast, then
    the lower and upper bound of each level), written out as ``forecast`` ``[N, H]`` and ``lower_<level>`` /
    ``upper_<level>`` ``[N, H]``; binary outputs follow the JSON header in the order it lists them.
    ``forecast_dates`` (when dates were sent) and warnings are parameters: JSON text, as a parameter's value
    is a string."""
    names = output_names(request.levels)
    rows = dict(zip(names, range(len(names)), strict=True))
    if request.outputs is None:
        wanted = [(name, request.binary_output) for name in names]
    else:
        wanted = [
            (name, request.binary_output if binary is None else binary) for name, binary in request.outputs
        ]
    shape = [prices.shape[0], prices.shape[2]]
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, binary in wanted:
        values = prices[:, rows[name], :]
        tensor: dict[str, Any] = {"name": name, "datatype": "FP64", "shape": shape}
        if binary:
            data = np.ascontiguousarray(values, dtype="<f8").tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            tensor["data"] = values.ravel().tolist()
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id is not None:
        answer["id"] = request.id
    parameters: dict[str, str] = {}
    if warnings:  # each item [series, message]
        parameters["warnings"] = to_json(warnings).decode()
    if forecast_dates is not None:
        parameters["forecast_dates"] = to_json(forecast_dates).decode()
    if parameters:
        answer["parameters"] = parameters
    answer["outputs"] = tensors
    header = to_json(answer)
    if not chunks:
        return header, {"content-type": "application/json"}
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return b"".join([header, *chunks]), headers
