"""``POST /train`` on several series: JSON ``series`` (one CSV written per series), several uploaded files,
or a long-format upload with an ``id_column`` -- checked before queueing exactly as ``python -m training
train`` checks ``--csv a.csv --csv b.csv`` or ``--id-column``, each message starting with the series' id.

Limits: at most ``CLOSECAST_MAX_BATCH_SERIES`` series (the ``/forecast/batch`` limit, 413) and at most
``MAX_CLOSES_CEILING`` closes in all (the ceiling one series already had, 413), within the request's byte
limit ``CLOSECAST_MAX_UPLOAD_BYTES``. A tune job takes one series (``python -m training tune`` reads one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.api.train_intake import (
    prepare_upload,
    prepare_values,
    series_of_values,
    training_config,
    tune_spec,
    upload_name,
)
from app.api.train_schemas import TrainRequest, TrainSeries, UploadForm
from app.config import MAX_CLOSES_CEILING, Settings
from app.jobs.spec import Prepare, Submission, write_series_csv
from closecast.collection import split_by_time
from closecast.config import Config
from closecast.errors import InputInvalid, Loc, PayloadTooLarge, Problem, TooManySeries
from closecast.series import DataError, MissingFeature, Series, check_trainable, load_many, require_features

_SINGLE = ("closes", "dates", "features")


def _problem(loc: Loc, message: str, kind: str) -> InputInvalid:
    return InputInvalid([Problem(loc, message, kind)])


def prepare_json(body: TrainRequest, settings: Settings, model: str) -> Prepare:
    """One series (``closes``) or several (``series``): never both, never neither."""
    given = [f for f in _SINGLE if getattr(body, f) is not None]
    if body.series is not None and given:
        why = f"{given[0]} and series are both sent; send one series as closes (with dates, features) or "
        raise _problem(("body", given[0]), why + "several as series, not both", "series_conflict")
    if body.series is None and body.closes is None:
        raise _problem(("body", "closes"), "neither closes nor series is sent; send one series as closes or "
                       "several as series: [{id, closes, dates?, features?}, ...]", "missing")  # fmt: skip
    if body.series is None:
        return prepare_values(body, settings, model)
    return _prepare_series(body, body.series, settings, model)


def prepare_files(
    form: UploadForm, files: list[tuple[str | None, bytes]], settings: Settings, model: str
) -> Prepare:
    """One CSV as always; several files, or an ``id_column``, as the CLI's several series."""
    if len(files) == 1 and form.id_column is None:
        return prepare_upload(form, files, settings, model)
    return _prepare_uploads(form, files, settings, model)


def _check_count(n: int, settings: Settings, tune: object) -> None:
    if n > settings.max_batch_series:
        raise TooManySeries(n, settings.max_batch_series)
    if tune is not None and n > 1:
        raise _problem(("body", "tune"), f"a tune job searches on one series but {n} were sent; send one "
                       "series, or train on several without tune", "tune_invalid")  # fmt: skip


def _check_total(series: Sequence[Series]) -> int:
    total = sum(int(s.closes.size) for s in series)
    if total > MAX_CLOSES_CEILING:
        raise PayloadTooLarge(
            f"the {len(series)} series hold {total} closes in all but a /train job takes at most "
            f"{MAX_CLOSES_CEILING}; send fewer or shorter series"
        )
    return total


def _checked_together(series: Sequence[Series], cfg: Config, loc: Loc) -> int:
    """The CLI's checks of several series (pooled split by time, features), and the total closes."""
    total = _check_total(series)
    try:
        for s in series:
            require_features(s, cfg.data.features)
        if len(series) == 1:
            check_trainable(series[0], cfg.data)
        else:
            split_by_time(series, cfg.data)
    except MissingFeature as exc:
        raise _problem(loc, str(exc), "features_missing") from None
    except DataError as exc:
        raise _problem(loc, str(exc), "series_too_short") from None
    return total


def _one_of_many(i: int, item: TrainSeries, cfg: Config) -> Series:
    """One ``series[i]``, checked like a single series' closes, its messages prefixed with its id."""
    features = {str(k): v for k, v in (item.features or {}).items()}
    try:
        series = series_of_values(item.closes, item.dates, cfg, features, check_length=False)
    except InputInvalid as exc:
        problem = exc.problems[0]
        loc = ("body", "series", i, *problem.loc[1:])
        raise _problem(loc, f"{item.id}: {problem.msg}", problem.type) from None
    series.name = series.source = item.id
    return series


def _prepare_series(body: TrainRequest, items: list[TrainSeries], settings: Settings, model: str) -> Prepare:
    _check_count(len(items), settings, body.tune)
    cfg = training_config(body.params.overrides(), settings.train_threads)
    tune = tune_spec(body.tune, settings, body.params)
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            raise _problem(("body", "series", i, "id"), f"two series have id {item.id!r}; give each series "
                           "its own id", "series_duplicate")  # fmt: skip
        seen.add(item.id)
    series = [_one_of_many(i, item, cfg) for i, item in enumerate(items)]
    if len({s.dates is None for s in series}) > 1:
        raise _problem(("body", "series"), "some series have dates and some do not; send dates with every "
                       "series or with none", "dates_invalid")  # fmt: skip
    total = _checked_together(series, cfg, ("body", "series"))

    def prepare(work: Path) -> Submission:
        names = [f"{s.name}.csv" for s in series]
        for s, csv_name in zip(series, names, strict=True):
            write_series_csv(work / csv_name, s)
        date_column = "Date" if series[0].dates else None
        return Submission(
            body.source_label(),
            body.promote,
            names,
            "Close",
            date_column,
            total,
            body.params.overrides(),
            cfg.train.epochs,
            model,
            n_series=len(series),
            tune=tune,
        )

    return prepare


def _file_names(files: list[tuple[str | None, bytes]]) -> list[str]:
    names = [f"{upload_name(filename)}.csv" for filename, _ in files]
    for i, name in enumerate(names):
        if name in names[:i]:
            why = f"two uploaded files are named {name!r}; series are named by their file names, so give "
            raise _problem(("body", "file"), why + "each file its own name", "series_duplicate")
    return names


def _prepare_uploads(
    form: UploadForm, files: list[tuple[str | None, bytes]], settings: Settings, model: str
) -> Prepare:
    params = form.params().overrides()
    cfg = training_config(params, settings.train_threads, form.column, form.date_column)
    if len(files) > settings.max_batch_series:
        raise TooManySeries(len(files), settings.max_batch_series)
    if form.tune() is not None:
        raise _problem(("body", "tune_trials"), "a tune job searches on one series (python -m training tune "
                       "reads one CSV); upload one file without id_column, or train without tune_* fields",
                       "tune_invalid")  # fmt: skip
    names = _file_names(files)
    label = form.source or form.name  # default: one file's stem, or "<n>-series" once n is known

    def prepare(work: Path) -> Submission:
        for csv_name, (_, content) in zip(names, files, strict=True):
            (work / csv_name).write_bytes(content)
        try:
            found = load_many([work / n for n in names], form.column, form.date_column or "Date",
                              form.id_column, form.date_column is not None, cfg.data.features)  # fmt: skip
        except ValueError as exc:
            raise _problem(("body", "file"), str(exc), "data_invalid") from None
        _check_count(len(found), settings, None)
        total = _checked_together(found, cfg, ("body", "file"))
        name = label or (names[0].removesuffix(".csv") if len(names) == 1 else f"{len(found)}-series")
        return Submission(name, form.promote, names, form.column, form.date_column, total, params,
                          cfg.train.epochs, model, id_column=form.id_column, n_series=len(found))  # fmt: skip

    return prepare
