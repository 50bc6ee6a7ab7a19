"""A small reader for the Dockerfile and .dockerignore, shared by the deploy tests (no Docker engine needed).

``read_dockerfile`` gives the instructions per stage (comments dropped, continuations joined, as Docker
reads them); ``is_ignored`` applies Docker's .dockerignore rule; ``top_level_packages`` lists the packages
``pyproject.toml`` ships, so a test can check that each one reaches the image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARG defaults (before the first FROM)
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        names = {s.name for s in self.stages}
        chain = [self.stage(name)]
        while chain[-1].base in names:
            chain.append(self.stage(chain[-1].base))
        return chain

    def last(self, name: str, keyword: str) -> str | None:
        """Arguments of the instruction that the image of stage ``name`` ends up with (parents included)."""
        for stage in self.chain(name):
            found = [args for kw, args in stage.instructions if kw == keyword]
            if found:
                return found[-1]
        return None

    def all(self, name: str, keyword: str) -> list[str]:
        """Arguments of every ``keyword`` instruction of stage ``name`` and its parents, in build order."""
        stages = reversed(self.chain(name))
        return [args for stage in stages for kw, args in stage.instructions if kw == keyword]

    def env(self, name: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all(name, "ENV"):
            values.update(item.split("=", 1) for item in shlex.split(args))  # type: ignore[misc]
        return values


def read_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Instructions per stage: comments dropped, backslash continuations joined (as Docker does)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip().startswith("#") or (not raw.strip() and not pending):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        logical.append(pending + raw)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def healthcheck_command(args: str) -> tuple[dict[str, str], list[str]]:
    """``HEALTHCHECK --opt=v ... CMD <command>`` -> (options, argv)."""
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", args, flags=re.DOTALL)
    assert match, f"HEALTHCHECK without CMD: {args}"
    options = dict(opt[2:].split("=", 1) for opt in match.group(1).split())
    command = match.group(2).strip()
    argv = exec_form(command) if command.startswith("[") else ["/bin/sh", "-c", command]
    return options, argv


# ---- the build context and the packages ------------------------------------------------------------------


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        return re.compile(out.replace(r"\[", "[").replace(r"\]", "]"))

    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        if negated != ignored:
            continue
        if any(regex(pattern.strip("/")).fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[str]:
    """The patterns, in order, comments and blank lines dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def top_level_packages(root: Path = ROOT) -> list[str]:
    """Directories beside ``pyproject.toml`` holding Python code that its setuptools ``include`` ships."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and any(d.glob("*.py")) and any(fnmatch.fnmatch(d.name, p) for p in include)
    )


def unshipped_packages(
    dockerfile: Dockerfile, ignore_patterns: list[str], packages: list[str], stage: str = "wheel"
) -> dict[str, str]:
    """Package -> why it would be missing from the wheel ``stage`` builds (empty when all arrive)."""
    copies = [shlex.split(args) for kw, args in dockerfile.stage(stage).instructions if kw == "COPY"]
    copied = {
        source.rstrip("/")
        for words in copies
        if not any(w.startswith("--from") for w in words)
        for source in words[:-1]
        if not source.startswith("--")
    }
    why = {}
    for package in packages:
        if package not in copied:
            why[package] = f"the {stage} stage has no `COPY {package} ./{package}`"
        elif is_ignored(f"{package}/__init__.py", ignore_patterns):
            why[package] = f".dockerignore keeps {package}/ out of the build context (add `!{package}/`)"
    return why
