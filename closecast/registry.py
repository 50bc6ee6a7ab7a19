"""The model registry on disk: named models, each with one immutable directory per version, a ``current``
pointer and its history.

    models/                          the registry root (CLOSECAST_MODEL_DIR)
      default/                       a model name: a slug, [a-z0-9][a-z0-9._-]{0,63}
        20261123T054712Z-3f2a9c1b/   manifest.json model.onnx model.pt scaler.json report.png
        20261124T101500Z-91be0d7e/   ...
        current                      one line: the version served
        promotions.jsonl             append-only: one JSON line per promotion (version, at, previous, reason)
      aapl/ ...                      another model, same shape
      jobs.sqlite  .jobs/            the retrain jobs of every model (app/jobs/)
      .registry.lock                 flocked by every change of the registry (closecast/registry_lock.py)

The functions below that take a ``model_dir`` work on one model's directory; ``FilePointers.model_dir_of``
(``closecast/pointer_store.py``) is the one place mapping a name to it. A registry in the older flat layout
(versions directly in the root) is moved under the default model's name by ``closecast.migrate``.

The pointer is a plain file replaced with ``os.replace`` (atomic on POSIX), so a reader sees the old or the
new version, never half of one; bundles are written to a hidden temporary directory and renamed into place.
Plain files over symlinks because they survive git, Docker volumes and every filesystem the same way.

Every promotion is appended to the history *before* the pointer moves, so the pointer never names a
version the history lacks. When the pointer is missing, empty, garbled or names no bundle, the served
version is the newest *promoted* one that still exists (``current_candidates``): a version registered with
``promote=never`` is never served by accident. ``closecast/pointer_store.py`` holds the ``PointerStore``
protocol a database backend implements for the same contract (per model name), and ``FilePointers``, its
implementation on these files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

CURRENT_POINTER = "current"
PROMOTIONS = "promotions.jsonl"
MANIFEST = "manifest.json"
_POINTER_MAX_BYTES = 256  # a version name is at most 128 characters; more is not a pointer
VERSION_MAX_LENGTH = 128
VERSION_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{VERSION_MAX_LENGTH - 1}}}$"
_VERSION_RE = re.compile(VERSION_PATTERN)
_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MODEL_NAME_RULE = (
    "a model name is 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
)
# Names a model cannot take: the pointer's own name, and the files the registry root holds beside the models.
RESERVED_MODEL_NAMES = frozenset(
    {CURRENT_POINTER, PROMOTIONS, MANIFEST, "jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "readme.md"}
)


# The rule as one regular expression for the OpenAPI docs (the server checks with the messages below).
MODEL_NAME_PATTERN = (
    r"^(?!(current|promotions\.jsonl|manifest\.json|jobs\.sqlite(-wal|-shm)?|readme\.md)$)"
    r"[a-z0-9][a-z0-9._-]{0,63}$"
)


def model_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a model name, or None when it can."""
    if not _MODEL_RE.fullmatch(name):
        return MODEL_NAME_RULE
    if name in RESERVED_MODEL_NAMES:
        return f"{name!r} is reserved"
    return None


def is_valid_model_name(name: str) -> bool:
    return model_name_problem(name) is None


def list_models(root: Path) -> list[str]:
    """Model names in the registry ``root`` (directories holding a version or a pointer), sorted."""
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir()
        and is_valid_model_name(p.name)
        and ((p / CURRENT_POINTER).is_file() or list_versions(p))
    )


def is_valid_version(name: str) -> bool:
    """A version is a plain directory name: no path separators, no leading dot, at most 128 characters."""
    return bool(_VERSION_RE.fullmatch(name))


def new_version_id(salt: bytes = b"", now: datetime | None = None) -> str:
    """Sortable id: UTC time to the second plus 8 hex digits, e.g. ``20261123T054712Z-3f2a9c1b``."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(salt + now.isoformat().encode() + os.urandom(8)).hexdigest()[:8]
    return f"{now:%Y%m%dT%H%M%SZ}-{digest}"


def list_versions(model_dir: Path) -> list[str]:
    """Versions present in ``model_dir``, oldest first (ids sort by time)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and is_valid_version(p.name) and (p / MANIFEST).is_file()
    )


# The reason a promotion is recorded with starts with what made it (app/jobs/promotion.py, upload.py).
BY_REASON = (("job: ", "job"), ("promoted through POST", "hand"), ("uploaded through POST", "upload"))


@dataclass(frozen=True)
class Promotion:
    """One line of ``promotions.jsonl``."""

    version: str
    at: str
    previous: str | None = None
    reason: str = ""

    @property
    def by(self) -> str:
        """Who made it: ``job`` (a /train job's gate), ``hand`` (``POST .../promote``), ``upload`` (a new
        model's uploaded first version) or ``registry`` (recorded from an existing pointer, seeded)."""
        for prefix, who in BY_REASON:
            if self.reason.startswith(prefix):
                return who
        return "registry"


@dataclass(frozen=True)
class PointerRead:
    """What the ``current`` file holds: a servable ``version``, or why it is not one (``problem``)."""

    version: str | None
    problem: str | None = None


@dataclass(frozen=True)
class PointerState:
    """One read of all a poll needs: ``stamp``, the servable version the pointer names, ``candidates``."""

    stamp: tuple[int, int] | None
    pointed: str | None
    candidates: list[str]


def is_bundle(model_dir: Path, version: str) -> bool:
    return is_valid_version(version) and (model_dir / version / MANIFEST).is_file()


def read_pointer(model_dir: Path) -> PointerRead:
    """The pointer file, read as bytes: never raises on garbage, says what is wrong with it instead."""
    try:
        with (model_dir / CURRENT_POINTER).open("rb") as fh:
            raw = fh.read(_POINTER_MAX_BYTES + 1)
    except FileNotFoundError:
        return PointerRead(None, "the `current` pointer is missing")
    except OSError as exc:
        return PointerRead(None, f"the `current` pointer is unreadable ({exc.strerror or exc})")
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return PointerRead(None, "the `current` pointer is not UTF-8 text")
    if not name:
        return PointerRead(None, "the `current` pointer is empty")
    if len(raw) > _POINTER_MAX_BYTES or not is_valid_version(name):
        return PointerRead(None, f"the `current` pointer holds {name[:40]!r}, which is not a version name")
    if not is_bundle(model_dir, name):
        return PointerRead(None, f"the `current` pointer names {name!r}, which is not a bundle here")
    return PointerRead(name)


def promotion_history(model_dir: Path) -> list[Promotion]:
    """Every recorded promotion, oldest first; a line that is not a promotion is skipped (and logged)."""
    try:
        raw = (model_dir / PROMOTIONS).read_bytes()
    except OSError:
        return []
    return parse_promotions(raw)


def parse_promotions(raw: bytes) -> list[Promotion]:
    """``promotions.jsonl`` as bytes (a file, or an object store's copy): the promotions, oldest first."""
    history: list[Promotion] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            item = json.loads(line)
            history.append(Promotion(**{k: item[k] for k in ("version", "at", "previous", "reason")}))
        except (ValueError, KeyError, TypeError):
            if line.strip():
                log.warning("%s line %d is not a promotion record; skipped", PROMOTIONS, number)
    return history


def current_candidates(model_dir: Path) -> list[str]:
    """Versions to serve, best first: the pointer's, then promoted versions newest first (existing only)."""
    pointed = read_pointer(model_dir).version
    ordered = [pointed] if pointed else []
    for item in reversed(promotion_history(model_dir)):
        if item.version not in ordered and is_bundle(model_dir, item.version):
            ordered.append(item.version)
    return ordered


def read_current(model_dir: Path) -> str | None:
    """The version to serve: the pointer's, else the last promoted version that exists, else None."""
    candidates = current_candidates(model_dir)
    return candidates[0] if candidates else None


def record_existing_pointer(model_dir: Path) -> bool:
    """A registry from before the history (or a hand-set pointer): record its pointer as a promotion.

    Returns True when it wrote. Without this, deleting the pointer of such a registry would leave no
    promoted version to fall back to.
    """
    if not pointer_unrecorded(model_dir):
        return False
    pointed = read_pointer(model_dir).version
    assert pointed is not None  # pointer_unrecorded says so
    _append_promotion(model_dir, Promotion(pointed, _now(), None, "recorded from the existing pointer"))
    return True


def pointer_unrecorded(model_dir: Path) -> bool:
    """Whether the pointer names a version the promotion history does not end with (a read, no lock)."""
    pointed = read_pointer(model_dir).version
    history = promotion_history(model_dir)
    return pointed is not None and not (history and history[-1].version == pointed)


def set_current(model_dir: Path, version: str, reason: str = "") -> str | None:
    """Record the promotion, then point ``current`` at ``version`` atomically (temp file, fsync, replace);
    returns the version the pointer named before (the history's ``previous``)."""
    if not is_bundle(model_dir, version):
        raise ValueError(f"version {version!r} is not a bundle in the registry")
    previous = read_pointer(model_dir).version
    _append_promotion(model_dir, Promotion(version, _now(), previous, reason))
    _write_atomically(model_dir, CURRENT_POINTER, version + "\n")
    return previous


def promotions_text(history: list[Promotion]) -> str:
    """The ``promotions.jsonl`` holding ``history``, one line per promotion, as ``set_current`` appends."""
    return "".join(json.dumps(asdict(item), separators=(",", ":")) + "\n" for item in history)


def mirror_pointer(model_dir: Path, version: str, history: list[Promotion]) -> None:
    """Write ``promotions.jsonl`` then ``current`` as the database holds them (scale-out keeps the files as
    a copy): each replaced atomically, so a reader sees an old or a new file, never half of one."""
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(model_dir, PROMOTIONS, promotions_text(history))
    _write_atomically(model_dir, CURRENT_POINTER, version + "\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _append_promotion(model_dir: Path, item: Promotion) -> None:
    """One ``write`` of one line with O_APPEND: concurrent writers never interleave inside a line."""
    line = promotions_text([item]).encode()
    fd = os.open(model_dir / PROMOTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(model_dir: Path, name: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=model_dir)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; workers running as another user must read it
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, model_dir / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_dir(path: Path, missing_ok: bool = False) -> None:
    """Remove a version's or a model's directory: renamed out of sight first (atomic: a reader sees the
    directory or nothing), then deleted at leisure. ``missing_ok``: a directory already gone is no error."""
    hidden = path.parent / f".deleted-{path.name}-{secrets.token_hex(4)}"
    try:
        os.rename(path, hidden)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    shutil.rmtree(hidden, ignore_errors=True)
