"""What a caller without the key sees of a model's training data: counts and date ranges, never names.

A training series is named after its file (``secret-client.csv`` becomes ``secret-client``), so the file
name reaches a card three ways: ``data.source``, ``data.series[].name`` / ``.source``, and the keys of
``metrics.series``. Only the key holder sees them; everyone else gets each series as ``series 1``,
``series 2`` … (in the manifest's order) with its rows, dates, frequency and split, and the same metrics
under those labels.
"""

from __future__ import annotations

from typing import Any

# Per series, what anyone may see (no name, source, content hash or free-text notes).
PUBLIC_SERIES_FIELDS = (
    "rows",
    "rows_used",
    "rows_dropped_empty",
    "date_start",
    "date_end",
    "frequency",
    "split",
)
# Of the data block, the fields that may carry a name.
NAMED_DATA_FIELDS = ("source", "sources", "series")


def series_label(index: int) -> str:
    """How a series is called to a caller without the key: ``series 1`` for the first."""
    return f"series {index + 1}"


def public_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without file or series names: each series reduced to ``PUBLIC_SERIES_FIELDS``."""
    shown = {k: v for k, v in data.items() if k not in NAMED_DATA_FIELDS}
    series = data.get("series")
    if isinstance(series, list):
        shown["series"] = [
            {"name": series_label(i), **{k: s[k] for k in PUBLIC_SERIES_FIELDS if k in s}}
            for i, s in enumerate(series)
            if isinstance(s, dict)
        ]
    return shown


def series_labels(data: dict[str, Any]) -> dict[str, str]:
    """Each training series' name (and file name) -> its public label, from ``data.series``."""
    labels: dict[str, str] = {}
    for i, s in enumerate(data.get("series") or []):
        if isinstance(s, dict):
            for key in ("name", "source"):
                if isinstance(s.get(key), str):
                    labels[s[key]] = series_label(i)
    return labels


def relabelled(value: Any, labels: dict[str, str]) -> Any:
    """``value`` with every dict key and string that names a training series replaced by its label."""
    if isinstance(value, dict):
        return {
            labels.get(k, k) if isinstance(k, str) else k: relabelled(v, labels) for k, v in value.items()
        }
    if isinstance(value, list):
        return [relabelled(v, labels) for v in value]
    return labels.get(value, value) if isinstance(value, str) else value


def public_metrics(metrics: dict[str, Any] | None, data: dict[str, Any]) -> dict[str, Any] | None:
    """``metrics`` (or any block keyed by series, e.g. ``intervals``) with each series' name replaced by its
    label in ``public_data(data)``; a per-series entry whose series is not listed gets ``series N`` by
    position."""
    if not metrics:
        return metrics
    labels = series_labels(data)
    per_series = metrics.get("series")
    if isinstance(per_series, dict):  # a name the data does not list still must not show
        for position, name in enumerate(per_series):
            labels.setdefault(name, series_label(position))
    shown: dict[str, Any] = relabelled(metrics, labels)
    return shown
