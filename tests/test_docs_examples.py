"""Every example in README.md and docs/*.md runs as written, or at least parses.

Shell blocks (```bash) must pass ``bash -n``, hold no placeholder inside a command (``<job_id>``, ``...``),
send JSON that parses with every ``curl -d``, use only the form fields ``POST /train`` declares with
``curl -F``, and give ``python -m training`` only flags its parser accepts. Python blocks compile, JSON
blocks parse.
Synopses with ``[optional]`` parts belong in ```text blocks, which are not run.

Every ``/forecast`` and ``/forecast/batch`` example is then sent, as written, to the real app serving the
shipped default model (and copies of it under the names the examples use): the README tour's first and third
steps among them. An example followed by ``# {"detail": ...}`` must be refused with the message it shows.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from closecast import registry
from tests.helpers import make_settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"<[A-Za-z][\w .-]*>|\.\.\.|…")
HEREDOC = re.compile(r"(<<-?'?(\w+)'?[^\n]*\n).*?\n\2\n", re.S)  # group 1: the line that opens it


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        start, lang, body = -1, "", []
        for i, line in enumerate(lines, 1):
            if line.startswith("```") and start < 0:
                start, lang, body = i, line[3:].strip(), []
            elif line.startswith("```"):
                found.append(Block(str(page.relative_to(ROOT)), start, lang, "\n".join(body) + "\n"))
                start = -1
            elif start >= 0:
                body.append(line)
    return found


BLOCKS = _blocks()
SHELL = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell")]


@dataclass(frozen=True)
class Command:
    block: Block
    words: list[str]
    shown: str  # the comment line right after the command, if it starts with "# {" (its answer)


def _commands(block: Block) -> Iterator[Command]:
    """Each command of a shell block as words (continuations joined, heredoc bodies left out)."""
    text = HEREDOC.sub(r"\1", block.text).replace("\\\n", " ")
    lines = text.splitlines()
    buffer = ""
    for i, line in enumerate(lines):
        buffer += line + "\n"
        try:
            words = shlex.split(buffer, comments=True)
        except ValueError:
            continue  # a quote is still open: the command goes on on the next line
        buffer = ""
        if words:
            after = lines[i + 1].strip() if i + 1 < len(lines) else ""
            yield Command(block, words, after if after.startswith("# {") else "")
    assert not buffer.strip(), f"{block}: a quote opened here is never closed: {buffer[:80]}"


def _curls(block: Block) -> Iterator[tuple[Command, list[str]]]:
    """The words of every curl call in the block, from ``curl`` to the end of its pipeline stage."""
    for command in _commands(block):
        words = command.words
        for start, word in enumerate(words):
            if word == "curl" or word.endswith("(curl") or word == "$(curl":
                ends = [j for j in range(start + 1, len(words)) if words[j] in ("|", "&&", ";", "&")]
                stop = ends[0] if ends else None
                yield command, words[start + 1 : stop]


def _option(args: list[str], *names: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in names]


def _url(args: list[str]) -> str:
    return next((a for a in args if a.startswith(("localhost:", "127.0.0.1:", "http://", "https://"))), "")


def _path(args: list[str]) -> str:
    """The path a curl call asks for: ``localhost:8000/forecast`` -> ``/forecast``."""
    rest = _url(args).split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else ""


def test_the_pages_have_shell_examples() -> None:
    assert len(SHELL) >= 20, [str(b) for b in SHELL]


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_shell_example_parses_with_bash(block: Block) -> None:
    done = subprocess.run(["bash", "-n"], input=block.text, text=True, capture_output=True, check=False)
    assert done.returncode == 0, f"{block}: bash -n says {done.stderr.strip()}"


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_shell_example_has_no_placeholder(block: Block) -> None:
    bad = []
    for line in HEREDOC.sub(r"\1", block.text).splitlines():
        code = line.split(" # ", 1)[0] if not line.lstrip().startswith("#") else ""
        if PLACEHOLDER.search(code):
            bad.append(line.strip())
    assert not bad, f"{block}: placeholders inside commands (write them in a ```text synopsis): {bad}"


@pytest.mark.parametrize("block", SHELL, ids=str)
def test_curl_bodies_are_json(block: Block) -> None:
    for _, args in _curls(block):
        for body in _option(args, "-d", "--data", "--data-raw", "--data-binary"):
            if not body.startswith("@"):
                try:
                    json.loads(body)
                except ValueError as e:
                    raise AssertionError(f"{block}: curl -d body is not JSON ({e}): {body[:80]}") from e


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real app on a copy of the shipped registry, plus the default model's bundle under the model names
    the examples forecast with (any bundle answers any closes; only the name is under test)."""
    models = tmp_path_factory.mktemp("docs") / "models"
    shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("jobs.sqlite*", ".jobs", ".tmp-*"))
    version = registry.read_current(models / "default")
    assert version is not None
    for name in _model_names():
        shutil.copytree(models / "default" / version, models / name / version)
        (models / name / "current").write_text(version + "\n")
    with TestClient(create_app(make_settings(models))) as c:
        yield c


def _form_fields(client: TestClient) -> set[str]:
    operation = client.get("/openapi.json").json()["paths"]["/train"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in schema:
        schema = client.get("/openapi.json").json()["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return set(schema["properties"])


@pytest.mark.parametrize("block", [b for b in SHELL if "curl" in b.text and " -F " in b.text], ids=str)
def test_train_form_fields_exist(block: Block, client: TestClient) -> None:
    fields = _form_fields(client)
    for _, args in _curls(block):
        if _path(args) == "/train":
            names = {field.split("=", 1)[0] for field in _option(args, "-F", "--form")}
            assert names <= fields, f"{block}: POST /train has no form field {sorted(names - fields)}"


FORECASTS = [
    (command, args)
    for block in SHELL
    for command, args in _curls(block)
    if _path(args) in ("/forecast", "/forecast/batch")
]


def _model_names() -> set[str]:
    """Every model name a forecast example asks for, besides the default."""
    names = set()
    for _, args in FORECASTS:
        for body in _option(args, "-d"):
            sent = json.loads(body)
            names |= {s.get("model") for s in [sent, *sent.get("series", [])]} - {None, "default"}
    return {name for name in names if registry.model_name_problem(name) is None}


def test_the_tour_forecasts_are_among_the_examples() -> None:
    pages = {command.block.page for command, _ in FORECASTS}
    assert "README.md" in pages and len(FORECASTS) >= 5, pages


@pytest.mark.parametrize("example", FORECASTS, ids=lambda e: str(e[0].block))
def test_forecast_example_answers_as_shown(example: tuple[Command, list[str]], client: TestClient) -> None:
    command, args = example
    path = _path(args)
    (body,) = _option(args, "-d")
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    if command.shown.startswith('# {"detail"'):
        assert answer.status_code == 422, answer.text
        shown = re.search(r'"msg":"([^"]+)"', command.shown)
        assert shown, f"{command.block}: the answer shown has no msg: {command.shown}"
        assert shown.group(1) in answer.text, f"{command.block}: shows {command.shown}; got {answer.text}"
        return
    assert answer.status_code == 200, f"{command.block}: {answer.text}"
    sent: dict[str, Any] = json.loads(body)
    got = answer.json()
    items = got["forecasts"] if path.endswith("batch") else [got]
    assert all(len(item["forecast"]) == sent.get("horizon", 1) for item in items)
    asked = sent.get("model", "default")
    for item, series in zip(items, sent.get("series", [sent]), strict=True):
        assert item["model"] == series.get("model", asked)


def _training_parser() -> Any:
    try:
        from training.__main__ import build_parser
    except ImportError as e:  # the train extra is not installed
        pytest.skip(f"training CLI not importable: {e}")
    return build_parser()


TRAINING = [
    (command, command.words[3:])
    for block in SHELL
    for command in _commands(block)
    if command.words[:3] == ["python", "-m", "training"]
]


@pytest.mark.parametrize("example", TRAINING, ids=lambda e: str(e[0].block))
def test_training_cli_example_has_only_known_flags(example: tuple[Command, list[str]]) -> None:
    command, argv = example
    argv = argv[: argv.index("&")] if "&" in argv else argv
    try:
        _training_parser().parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"{command.block}: python -m training {' '.join(argv)} is refused") from e


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=str)
def test_python_example_compiles(block: Block) -> None:
    compile(block.text, str(block), "exec")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "json"], ids=str)
def test_json_example_parses(block: Block) -> None:
    json.loads(block.text)


def test_every_setting_has_a_row_in_the_settings_page() -> None:
    """One table of every ``CLOSECAST_*`` variable of ``app/config.py``, one row each."""
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(CLOSECAST_[A-Z0-9_]+)` \|", page, re.M))
    wanted = {f"CLOSECAST_{name.upper()}" for name in Settings.model_fields}
    assert not wanted - rows, f"docs/settings.md has no row for {sorted(wanted - rows)}: add one each"


def test_no_merge_conflict_markers_are_committed() -> None:
    """A merge that left both sides in a Markdown table passes every other check: look for the markers."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in tracked.stdout.splitlines():
        path = ROOT / name
        if path.suffix not in {".md", ".py", ".toml", ".yaml", ".yml", ".conf", ".txt", ".sh", ""}:
            continue
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")):
                found.append(f"{name}:{number}")
    assert found == []
