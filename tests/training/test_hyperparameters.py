"""Every hyperparameter is declared once (``hp`` on a field of ``closecast/config.py``), and the CLI flags,
the ``/train`` params model and the Optuna search space are all made from that declaration: same names, and
a bound declared there is enforced by each, with an error quoting the bad value."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient

from app.api.params_model import ParamsBase, params_model
from app.api.train_schemas import TrainParams
from closecast.config import SECTIONS, Config
from closecast.hparams import KEY, OneOf, Span, check_fields, declared, hp
from tests.jobs.helpers import AUTH, build_app, trainer_settings
from tests.synthetic import calm_walk
from training.__main__ import build_parser, main
from training.flags import add_hyperparameter_flags, given
from training.search_space import search_space, span, suggest
from training.tune import SEARCH_SPACE


@dataclass(frozen=True)
class Extra:
    """A section a new hyperparameter could be added to: one declaration, nothing else."""

    momentum: float = hp(0.9, "SGD momentum", ge=0, lt=1, search=Span(0.5, 0.99))
    warmup: int = hp(2, "warm-up epochs", ge=0, le=50, search=OneOf((0, 2, 5)), api=False)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Tagged:
    """A tuple-of-names field: ``hp``'s ``items`` are the names it allows."""

    tags: tuple[str, ...] = hp((), "tags to attach", items=("calm", "wild"))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class Counted:
    """A section with a whole-number search range of its own."""

    count: int = hp(3, "how many", ge=1, le=10, search=Span(2, 9))


def _flag_names(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


def _sub(command: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = subparsers.choices[command]
    return parser


def test_every_config_field_is_declared_once_with_its_metadata() -> None:
    names = [f.name for section in SECTIONS for f in fields(section)]
    assert [p.name for p in declared(SECTIONS)] == names  # no field escapes the declaration
    assert all(KEY in f.metadata for section in SECTIONS for f in fields(section))
    assert len(set(names)) == len(names)  # Config.from_overrides takes them flat


def test_the_three_sets_of_names_are_the_declared_ones() -> None:
    cli = {p.name for p in declared(SECTIONS) if p.meta.cli}
    api = {p.name for p in declared(SECTIONS) if p.meta.api}
    searched = {p.name for p in declared(SECTIONS) if p.meta.search is not None}
    for command in ("train", "tune"):
        assert cli <= _flag_names(_sub(command)), command
    assert set(TrainParams.model_fields) == api
    assert set(SEARCH_SPACE) == searched
    # what each exposed before the declarations moved into the config
    assert api == {"window", "train_frac", "val_frac", "features", "hidden_size", "num_layers", "dropout",
                   "bidirectional", "epochs", "batch_size", "lr", "loss", "patience", "seed"}  # fmt: skip
    assert cli == api | {"column", "date_column", "id_column", "threads", "device"}
    assert searched == {"window", "hidden_size", "num_layers", "dropout", "bidirectional", "lr", "batch_size",
                        "loss"}  # fmt: skip


def test_a_new_field_appears_in_all_three() -> None:
    sections = (Extra,)
    parser = argparse.ArgumentParser()
    add_hyperparameter_flags(parser, sections)
    args = parser.parse_args(["--momentum", "0.8", "--warmup", "5"])
    assert Extra(**given(args, sections)) == Extra(momentum=0.8, warmup=5)
    shown = " ".join(parser.format_help().split())
    assert "--momentum MOMENTUM SGD momentum, in [0, 1) (default 0.9)" in shown
    model = params_model("ExtraParams", ParamsBase, sections)
    assert set(model.model_fields) == {"momentum"}  # warmup says api=False
    assert model(momentum=0.7).overrides() == {"momentum": 0.7}
    schema = model.model_json_schema()["properties"]["momentum"]
    assert (schema["minimum"], schema["exclusiveMaximum"]) == (0, 1)
    assert search_space(sections) == {"momentum": [0.5, 0.99], "warmup": [0, 2, 5]}
    trial = optuna.trial.FixedTrial({"momentum": 0.75, "warmup": 5})
    assert suggest(trial, {}, 60, sections) == {"momentum": 0.75, "warmup": 5}
    assert suggest(trial, {"momentum": 0.6}, 60, sections)["momentum"] == 0.6  # a flag given fixes it


def test_a_new_fields_bound_is_enforced_quoting_the_value() -> None:
    with pytest.raises(ValueError, match=r"^momentum is 1.5; it must be in \[0, 1\)$"):
        Extra(momentum=1.5)
    outside = r"search value 1.5 of 'SGD momentum' is outside its bounds, in \[0, 1\)"
    with pytest.raises(ValueError, match=outside):
        hp(0.9, "SGD momentum", ge=0, lt=1, search=Span(0.5, 1.5))
    with pytest.raises(ValueError, match="search value 60 of 'warm-up epochs' is outside its bounds"):
        hp(2, "warm-up epochs", ge=0, le=50, search=OneOf((0, 60)))


def test_a_names_field_refuses_a_name_outside_its_items_quoting_it() -> None:
    assert Tagged(tags=("wild", "calm")).tags == ("wild", "calm")
    with pytest.raises(ValueError, match=r"^tags names 'stormy'; choose among calm, wild$"):
        Tagged(tags=("calm", "stormy"))


def test_a_declared_bound_is_enforced_by_the_cli_the_api_and_the_search(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dropout in [0, 1): the CLI exits 2 with one line, /train answers 422, the search stays inside it."""
    message = "dropout is 1.5; it must be in [0, 1)"
    csv = tmp_path / "prices.csv"
    csv.write_text("Close\n" + "\n".join(str(c) for c in calm_walk(80)) + "\n")
    for command in ("train", "tune"):
        code = main([command, "--csv", str(csv), "--out", str(tmp_path / command), "--dropout", "1.5"])
        assert code == 2
        assert capsys.readouterr().err.splitlines() == [f"python -m training {command}: error: {message}"]
        assert not (tmp_path / command).exists()
    with TestClient(build_app(trainer_settings(model_dir))) as client:
        closes = [float(c) for c in calm_walk(80)]
        response = client.post("/train", json={"closes": closes, "params": {"dropout": 1.5}}, headers=AUTH)
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert [(d["loc"], d["msg"]) for d in detail] == [(["body", "params"], message)]
        schema = client.get("/openapi.json").json()["paths"]["/train"]["post"]["requestBody"]["content"]
        dropout = schema["application/json"]["schema"]["properties"]["params"]["properties"]["dropout"]
        assert (dropout["minimum"], dropout["exclusiveMaximum"]) == (0, 1)
        assert client.get("/train", headers=AUTH).json() == {"jobs": []}
    low, high = SEARCH_SPACE["dropout"]
    assert 0 <= low <= high < 1
    fixed = {"window": 11, "hidden_size": 8, "bidirectional": False, "lr": 1e-3, "batch_size": 32}
    for value in (low, high):  # the search's ends are values the config takes
        trial = optuna.trial.FixedTrial({"num_layers": 2, "dropout": value, "loss": "mse"})
        assert Config.from_overrides(suggest(trial, fixed, 60)).model.dropout == value


def test_dropout_is_searched_only_for_a_stack_and_hidden_size_on_a_log_scale() -> None:
    fixed = {"window": 11, "bidirectional": False, "lr": 1e-3, "batch_size": 32, "loss": "mse"}
    one = optuna.trial.FixedTrial({"hidden_size": 16, "num_layers": 1})  # no dropout asked of the trial
    assert suggest(one, fixed, 60)["dropout"] == 0.0
    assert SEARCH_SPACE["hidden_size"] == [16, 128, "log"] and SEARCH_SPACE["lr"] == [1e-4, 1e-2, "log"]


def test_tune_refuses_features_as_a_search_job_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--features`` is a flag of both commands (one declaration), but tune reads the closes alone."""
    csv = tmp_path / "prices.csv"
    csv.write_text("Close,Volume\n" + "\n".join(f"{c},100" for c in calm_walk(80)) + "\n")
    code = main(["tune", "--csv", str(csv), "--out", str(tmp_path / "b"), "--features", "volume"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "python -m training tune: error: tune searches on the closes alone (it reads no features); "
        "drop --features"
    ]
    assert not (tmp_path / "b").exists()


def test_span_reads_the_sections_it_is_given() -> None:
    assert span("window") == tuple(search_space()["window"][:2])
    assert span("count", (Counted,)) == (2, 9)
