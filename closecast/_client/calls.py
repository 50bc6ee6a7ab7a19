"""Each API call as data: method, path, body and how to read the answer.

``Client`` and ``AsyncClient`` differ only in how they send a ``Call`` (blocking or awaited), so what a
call sends and how its answer is read is written once, here, and both clients say the same thing.
"""

from __future__ import annotations

import email.utils
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closecast._client.results import BacktestResult, ForecastResult, Job

DEFAULT_LEVELS = (80, 95)
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Call:
    """One HTTP request and the function that turns its JSON answer into a result."""

    method: str
    path: str
    parse: Callable[[Any], Any]
    json: Any = None
    files: Any = None
    data: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": dict(self.headers)}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.files is not None:
            kwargs["files"] = self.files
        if self.data is not None:
            kwargs["data"] = self.data
        return kwargs


def _floats(values: Sequence[float] | Any, name: str) -> list[float]:
    """A list of floats from a list, tuple, numpy array or pandas Series (``tolist`` keeps full precision)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, not {type(values).__name__}")
    return [float(v) for v in values]


def _options(horizon: int, levels: Sequence[int], model: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"horizon": horizon, "level": list(levels)}
    if model is not None:
        body["model"] = model
    return body


def _series_fields(closes: Any, features: Mapping[str, Any] | None, dates: Sequence[Any] | None) -> dict:
    body: dict[str, Any] = {"closes": _floats(closes, "closes")}
    if features:
        body["features"] = {name: _floats(v, f"features[{name!r}]") for name, v in features.items()}
    if dates is not None:
        body["dates"] = [_iso(d) for d in dates]
    return body


def _iso(value: Any) -> str:
    """A date as ISO 8601 text: strings as sent, datetimes and pandas Timestamps by ``isoformat``."""
    return value if isinstance(value, str) else value.isoformat()


def forecast(
    closes: Any,
    horizon: int = 1,
    levels: Sequence[int] = DEFAULT_LEVELS,
    model: str | None = None,
    features: Mapping[str, Any] | None = None,
    dates: Sequence[Any] | None = None,
) -> Call:
    body = {**_series_fields(closes, features, dates), **_options(horizon, levels, model)}
    return Call("POST", "/forecast", ForecastResult.of, json=body)


def forecast_batch(
    series: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    horizon: int = 1,
    levels: Sequence[int] = DEFAULT_LEVELS,
    model: str | None = None,
) -> Call:
    """``series``: ``{id: closes}``, or ``[{"id", "closes", "model"?, "features"?, "dates"?}, ...]``."""
    if isinstance(series, Mapping):
        items = [{"id": str(key), "closes": _floats(v, f"series[{key!r}]")} for key, v in series.items()]
    else:
        items = [
            {
                "id": str(item["id"]),
                **_series_fields(item["closes"], item.get("features"), item.get("dates")),
                **({"model": item["model"]} if item.get("model") else {}),
            }
            for item in series
        ]
    body = {"series": items, **_options(horizon, levels, model)}
    return Call("POST", "/forecast/batch", _batch_results, json=body)


def _batch_results(body: dict[str, Any]) -> list[ForecastResult]:
    return [ForecastResult.of(item) for item in body["forecasts"]]


def backtest(
    closes: Any,
    model: str = "default",
    dates: Sequence[Any] | None = None,
    folds: int = 5,
    horizon: int = 1,
) -> Call:
    body = {"model": model, **_series_fields(closes, None, dates), "folds": folds, "horizon": horizon}
    return Call("POST", "/backtest", BacktestResult.of, json=body)


def train(
    data: Any,
    *,
    model: str,
    params: Mapping[str, Any] | None = None,
    promote: str = "auto",
    tune: Mapping[str, Any] | None = None,
    dates: Sequence[Any] | None = None,
    column: str | None = None,
    date_column: str | None = None,
    id_column: str | None = None,
    source: str | None = None,
) -> Call:
    """``data``: closes (a list), several series (``{id: closes}``), a CSV file's path (uploaded as it is),
    or a pandas DataFrame in long format (``unique_id``, ``ds``, ``y``, as the Nixtla tools use)."""
    if isinstance(data, str | os.PathLike):
        return _upload(Path(data), model, params, promote, tune, column, date_column, id_column, source)
    body: dict[str, Any] = {"model": model, "params": dict(params or {}), "promote": promote}
    if tune is not None:
        body["tune"] = dict(tune)
    if source is not None:
        body["source"] = source
    if _is_dataframe(data):
        body["series"] = _long_format(data)
    elif isinstance(data, Mapping):
        body["series"] = [{"id": str(key), "closes": _floats(v, f"data[{key!r}]")} for key, v in data.items()]
    else:
        body.update(_series_fields(data, None, dates))
    return Call("POST", "/train", Job.of, json=body)


def _is_dataframe(data: Any) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "groupby")


def _long_format(frame: Any) -> list[dict[str, Any]]:
    """Series from a long-format DataFrame: one per ``unique_id``, ``ds`` as dates, ``y`` as closes."""
    missing = [name for name in ("unique_id", "y") if name not in frame.columns]
    if missing:
        raise ValueError(
            f"the DataFrame has no column {missing[0]!r}; send long format with columns unique_id, ds, y "
            f"(it has {list(frame.columns)})"
        )
    series = []
    for key, part in frame.groupby("unique_id", sort=False):
        if "ds" in part.columns:
            part = part.sort_values("ds")
        item: dict[str, Any] = {"id": str(key), "closes": _floats(part["y"], f"y of {key!r}")}
        if "ds" in part.columns:
            item["dates"] = [_iso(d) for d in part["ds"].tolist()]
        series.append(item)
    return series


def _upload(
    path: Path,
    model: str,
    params: Mapping[str, Any] | None,
    promote: str,
    tune: Mapping[str, Any] | None,
    column: str | None,
    date_column: str | None,
    id_column: str | None,
    source: str | None,
) -> Call:
    """A CSV sent as it is (multipart), its options as form fields (``tune.trials`` is ``tune_trials``)."""
    form: dict[str, Any] = {"model": model, "promote": promote}
    named = {"column": column, "date_column": date_column, "id_column": id_column, "source": source}
    form.update({key: value for key, value in named.items() if value is not None})
    form.update({key: _form_value(value) for key, value in (params or {}).items()})
    form.update({f"tune_{key}": _form_value(value) for key, value in (tune or {}).items()})
    files = {"file": (path.name, path.read_bytes(), "text/csv")}
    return Call("POST", "/train", Job.of, files=files, data=form)


def _form_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return [str(v) for v in value] if isinstance(value, list | tuple) else str(value)


def job(job_id: str) -> Call:
    return Call("GET", f"/train/{job_id}", Job.of)


def cancel(job_id: str) -> Call:
    return Call("DELETE", f"/train/{job_id}", Job.of)


def models() -> Call:
    return Call("GET", "/models", lambda body: body["models"])


def model_card(model: str = "default") -> Call:
    return Call("GET", f"/models/{model}", lambda body: body)


def promote(version: str, model: str = "default") -> Call:
    return Call("POST", f"/models/{model}/versions/{version}/promote", lambda body: body)


def retry_wait(status: int, retry_after: str | None, attempt: int, max_wait: float) -> float | None:
    """Seconds to wait before trying again, or None when the answer is final.

    429 (queue full) is always worth another try; 503 only when the server says when (``Retry-After``: it
    sends one while a model loads or a slot is busy, none when a feature is simply off). ``Retry-After`` is
    honoured in seconds or as an HTTP date; without it, 0.5 s doubling per attempt. Capped at ``max_wait``.
    """
    if status not in RETRY_STATUSES or (status == 503 and retry_after is None):
        return None
    wait = _retry_after_seconds(retry_after)
    if wait is None:
        wait = 0.5 * 2**attempt
    return min(max(wait, 0.0), max_wait)


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
