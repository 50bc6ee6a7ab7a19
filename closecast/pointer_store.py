"""Which version of each model is served, behind one interface: ``PointerStore`` (the protocol every backend
implements, per model name) and ``FilePointers``, its implementation on the registry's pointer files
(``closecast/registry.py``). A database backend (``app/storage/pg_pointers.py``) implements the same calls;
both live apart from the file functions so that the registry's on-disk layout and the contract a backend must
keep can each be read alone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from closecast import registry
from closecast.registry import PointerRead, PointerState, Promotion
from closecast.registry_lock import registry_lock


class PointerMoved(Exception):
    """A conditional promotion found the pointer naming another version than it was told to expect."""

    def __init__(self, model: str, expected: tuple[str, ...], now: str | None) -> None:
        self.now = now
        super().__init__(f"the pointer of {model!r} names {now} now, not one of {list(expected)}")


class PointerStore(Protocol):
    """Which version of a model name is served, and the history of that choice.

    ``FilePointers`` keeps them beside the bundles; a database backend implements the same calls.
    """

    def read_pointer(self, model: str) -> PointerRead:
        """The pointer as the store holds it: a servable version, or what is wrong with it."""

    def stamp(self, model: str) -> tuple[int, int] | None:
        """Identity of the pointer's last write (changes whenever it is written); None without one."""

    def current(self, model: str) -> str | None: ...

    def candidates(self, model: str) -> list[str]: ...

    def state(self, model: str) -> PointerState:
        """``stamp``, ``read_pointer`` and ``candidates`` in one read (a database: one query)."""

    def change_lock(self) -> AbstractContextManager[None]:
        """The lock every registry change holds (promotions, deletions, retention, a new model): across
        processes where the store itself cannot serialise writers (files), else this process's threads."""

    def model_lock(self, model: str) -> AbstractContextManager[None]:
        """Held inside ``change_lock`` around checking and removing versions of ``model``: the lock every
        promotion of ``model`` takes where it writes (a database's), so none points at a removed version."""

    def promote(
        self, model: str, version: str, reason: str = "", expected: tuple[str, ...] = ()
    ) -> str | None:
        """Move the pointer to ``version``; with ``expected``, only if it names one of those now (checked
        where the write happens, so two processes cannot interleave): else ``PointerMoved``. Returns the
        version it named before, read in the same critical section as the write (the history's
        ``previous``), so two promotions at once each report the one the other replaced."""

    def history(self, model: str) -> list[Promotion]: ...


class FilePointers:
    """The pointer files of a registry; ``model_dir_of`` maps a model name to its directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def model_dir_of(self, model: str) -> Path:
        """``root/<model>``; a name that is not a slug never becomes a path (ValueError)."""
        problem = registry.model_name_problem(model)
        if problem is not None:
            raise ValueError(f"model name {model[:80]!r} is not valid: {problem}")
        return self.root / model

    def read_pointer(self, model: str) -> PointerRead:
        return registry.read_pointer(self.model_dir_of(model))

    def stamp(self, model: str) -> tuple[int, int] | None:
        """The pointer file's inode and mtime: ``set_current`` replaces the file, so both change."""
        try:
            info = (self.model_dir_of(model) / registry.CURRENT_POINTER).stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def current(self, model: str) -> str | None:
        return registry.read_current(self.model_dir_of(model))

    def candidates(self, model: str) -> list[str]:
        return registry.current_candidates(self.model_dir_of(model))

    def state(self, model: str) -> PointerState:
        return PointerState(self.stamp(model), self.read_pointer(model).version, self.candidates(model))

    def change_lock(self) -> AbstractContextManager[None]:
        """The registry lock file in ``root`` (``closecast/registry_lock.py``): every process's writers."""
        return registry_lock(self.root)

    def model_lock(self, model: str) -> AbstractContextManager[None]:
        return nullcontext()  # ``change_lock``'s file lock already holds off every process's promotions

    def promote(
        self, model: str, version: str, reason: str = "", expected: tuple[str, ...] = ()
    ) -> str | None:
        """Callers hold ``closecast.registry_lock`` across processes: the check and the write are one."""
        if expected and (now := self.current(model)) not in expected:
            raise PointerMoved(model, expected, now)
        return registry.set_current(self.model_dir_of(model), version, reason)

    def history(self, model: str) -> list[Promotion]:
        return registry.promotion_history(self.model_dir_of(model))


def promotions(pointers: PointerStore, model: str) -> list[Promotion]:
    """A model's promotions, newest first, from whichever store holds them (the pointer files'
    ``promotions.jsonl``, or PostgreSQL in scale-out mode: ``PointerStore.history``)."""
    return list(reversed(pointers.history(model)))
