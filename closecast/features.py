"""OHLCV features next to the closes (numpy only), shared by training and serving so they cannot drift.

A model may read, besides each window's log returns, the day's ``high``, ``low``, ``open`` and ``volume``.
Each enters the network free of the price level *and* of volatility, as the returns do, as one more channel
of the input ``[batch, W-1, 1+F]``, aligned with the returns (rows 1..W-1 of the window of W rows):

- ``high``, ``low``, ``open``: ``log(x / close)`` of the same row, divided by the window's RMS return
  ``s_w`` (the very scale the returns are divided by). A ratio to the same row's close carries no price
  level; dividing by ``s_w`` carries no volatility: multiplying every log return *and* every log range by k
  multiplies ``s_w`` by k and leaves the channel unchanged. Then standardised by statistics fitted on the
  training windows.
- ``volume``: the change ``log(1 + v[t]) - log(1 + v[t-1])`` (volume may be 0; ``log1p`` keeps it finite),
  standardised by the mean and standard deviation of the training windows' changes. A change of log volume
  has no unit: the level of activity (shares or contracts, a liquid or a thin asset) drops out.

Prices must be finite and > 0, volumes finite and >= 0. Multi-step forecasts *hold* the features at their
last value: every future row repeats the last row's ratio of high/low/open to its close, and its volume
(a change of 0). The network sees no new range or activity information beyond the last row, said in
``FEATURE_HORIZON_POLICY``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from closecast.errors import InputInvalid, Loc, Problem, format_loc, render_value

FEATURES = ("high", "low", "open", "volume")
PRICE_FEATURES = ("high", "low", "open")
KINDS = {
    "high": "log_ratio_to_close_per_window_rms",
    "low": "log_ratio_to_close_per_window_rms",
    "open": "log_ratio_to_close_per_window_rms",
    "volume": "log1p_change_standardized",
}
FEATURE_HORIZON_POLICY = "hold_last"  # steps 2..h repeat the last row's features (volume change 0)

F64 = npt.NDArray[np.float64]
Arr = npt.NDArray[np.floating[Any]]


def split_names(text: str) -> list[str]:
    """``"high, low,"`` -> ``["high", "low"]``: the CLI's and a form field's comma-separated names."""
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_names(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"high,low"`` or ``["high", "low"]`` -> ``("high", "low")``; refuses unknown or repeated names."""
    if names is None:
        return ()
    items = split_names(names) if isinstance(names, str) else [n for n in names if n != ""]
    for n in items:
        if not isinstance(n, str) or n not in FEATURES:
            raise ValueError(f"feature {n!r} is unknown; choose among {', '.join(FEATURES)} (lowercase)")
    repeated = sorted({n for n in items if items.count(n) > 1})
    if repeated:
        raise ValueError(f"feature {repeated[0]!r} is listed twice; name each feature once")
    return tuple(items)


def raw_channels(closes: Arr, features: Mapping[str, Arr], names: Sequence[str]) -> F64:
    """Windows of closes ``[..., W]`` and of each feature ``[..., W]`` -> ``[..., W-1, F]`` before the window
    scale: ``log(x / close)`` for prices, the change of ``log1p(volume)``, rows 1..W-1."""
    c = np.asarray(closes, dtype=np.float64)
    columns = []
    for name in names:
        x = np.asarray(features[name], dtype=np.float64)
        if name == "volume":
            columns.append(np.diff(np.log1p(x), axis=-1))
        else:
            columns.append(np.log(x[..., 1:] / c[..., 1:]))
    shape = (*c.shape[:-1], c.shape[-1] - 1, 0)
    return np.stack(columns, axis=-1) if columns else np.zeros(shape)


def held(raw: Arr, names: Sequence[str]) -> F64:
    """The next row of a rollout ``[N, F]``: the last row's ratios, and a volume change of 0."""
    row = np.array(raw[:, -1, :], dtype=np.float64)
    for j, name in enumerate(names):
        if name == "volume":
            row[:, j] = 0.0
    return row


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature ``mean``/``std`` of the training windows' channels (``scaler.json``'s ``features``)."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _per_window(self, raw: Arr, scale: Arr) -> F64:
        """Prices divided by each window's scale ``[N]``; volume left as it is."""
        is_price = np.array([n in PRICE_FEATURES for n in self.names])
        s = np.asarray(scale, dtype=np.float64)[:, np.newaxis, np.newaxis]
        return np.asarray(raw, dtype=np.float64) / np.where(is_price, s, 1.0)

    def transform(self, raw: Arr, scale: Arr) -> F64:
        """``[N, W-1, F]`` raw channels and the window scales ``[N]`` -> model units ``[N, W-1, F]``."""
        out: F64 = (self._per_window(raw, scale) - np.asarray(self.mean)) / np.asarray(self.std)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "kinds": [KINDS[n] for n in self.names],
            "mean": list(self.mean),
            "std": list(self.std),
            "horizon_policy": FEATURE_HORIZON_POLICY,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureScaler:
        """Rebuild from ``scaler.json``; refuses what it cannot use."""
        names = parse_names(list(data["names"]))
        kinds = list(data.get("kinds", []))
        if kinds != [KINDS[n] for n in names]:
            raise ValueError(
                f"feature kinds {kinds} are not the ones this release computes for {list(names)}"
            )
        mean = tuple(float(v) for v in data["mean"])
        std = tuple(float(v) for v in data["std"])
        if len(mean) != len(names) or len(std) != len(names):
            raise ValueError(f"feature statistics have {len(mean)}/{len(std)} values for {len(names)} names")
        if not all(np.isfinite(mean)) or not all(np.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"feature statistics mean {list(mean)} std {list(std)} must be finite, std > 0")
        return cls(names, mean, std)


def fit_feature_scaler(raw: Arr, scale: Arr, names: Sequence[str]) -> FeatureScaler:
    """Fit on the training windows (non-flat ones): raw ``[N, W-1, F]``, scales ``[N]``. A channel that
    never moves (a high always equal to the close) gets std 1, so it stays a constant 0 input."""
    unscaled = FeatureScaler(tuple(names), (0.0,) * len(names), (1.0,) * len(names))
    x = unscaled.transform(raw, scale).reshape(-1, len(names))
    mean = x.mean(axis=0) if x.size else np.zeros(len(names))
    std = x.std(axis=0) if x.size else np.ones(len(names))
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return FeatureScaler(tuple(names), tuple(mean.tolist()), tuple(std.tolist()))


# --- checks of what a client sends ----------------------------------------------------------------------


def _problem(loc: Loc, msg: str, kind: str, value: Any = None) -> Problem:
    return Problem(loc, f"{format_loc(loc)} {msg}", kind, value)


def check_values(name: str, values: Sequence[float] | F64, n_closes: int, loc: Loc) -> Problem | None:
    """One feature of one series: as many values as closes, finite, prices > 0, volume >= 0."""
    if len(values) != n_closes:
        return _problem(
            loc,
            f"has {len(values)} values but closes has {n_closes}; send one {name} per close",
            "feature_length",
        )
    x = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(x) | ((x < 0) if name == "volume" else (x <= 0))
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    rule = (
        "a volume must be finite and >= 0" if name == "volume" else f"a {name} price must be finite and > 0"
    )
    return Problem(
        (*loc, i),
        f"{format_loc((*loc, i))} is {render_value(float(x[i]))}; {rule}",
        "feature_invalid",
        float(x[i]),
    )


def check_features(
    wanted: Sequence[str], sent: Mapping[str, Any] | None, n_closes: int, loc: Loc, version: str
) -> list[Problem]:
    """Every problem with one series' ``features`` for a model that reads ``wanted`` (maybe none)."""
    sent = sent or {}
    reads = ", ".join(wanted)
    if not wanted:
        if not sent:
            return []
        words = f"sends {sorted(sent)} but model {version} reads closes only; drop features"
        return [_problem(loc, words, "features_not_used", sorted(sent))]
    if not sent:
        shape = ", ".join(f"{n!r}: [...]" for n in wanted)
        words = f"is missing; model {version} reads {reads}: send features {{{shape}}}, one value per close"
        return [_problem(loc, words, "features_missing")]
    problems = [
        _problem(
            (*loc, name), f"is not read by model {version} (it reads {reads}); drop it", "feature_not_used"
        )
        for name in sorted(set(sent) - set(wanted))
    ]
    for name in wanted:
        if name not in sent:
            words = f"is missing; model {version} reads {reads}: send each, one value per close"
            problems.append(_problem((*loc, name), words, "feature_missing"))
            continue
        problem = check_values(name, sent[name], n_closes, (*loc, name))
        if problem is not None:
            problems.append(problem)
    return problems


def check_batch(
    wanted: Sequence[str],
    lengths: Sequence[int],
    features: Sequence[Mapping[str, Any] | None] | None,
    locs: Sequence[Loc],
    version: str,
) -> None:
    """Raise ``InputInvalid`` with every problem of every series' features; series ``i``'s are located
    beside its closes (``series[i].features`` next to ``series[i].closes``)."""
    sent = features if features is not None else [None] * len(lengths)
    problems = [
        p
        for n, f, loc in zip(lengths, sent, locs, strict=True)
        for p in check_features(wanted, f, n, (*loc[:-1], "features"), version)
    ]
    if problems:
        raise InputInvalid(problems)
