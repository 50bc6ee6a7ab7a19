"""The model a worker serves, and its hot swap when the registry's ``current`` pointer moves.

A request reads ``holder.current`` once at its start and keeps that ``Forecaster`` to the end, so a swap
(one reference assignment) never mixes two models inside one answer and in-flight requests finish on the
old one. Each worker process watches the pointer itself: after ``registry.set_current`` every worker
loads, verifies and swaps within ``reload_interval_s``.

A pointer that is missing, garbled or names a bundle that fails verification never strands the worker:
it serves the newest promoted version that verifies (``registry.current_candidates``), logs why once per
pointer write and counts it (``on_fallback``). A version that was never promoted is never a candidate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread

from closecast import pointer_store, registry
from closecast.bundle import load_forecaster
from closecast.errors import BundleInvalid, ClosecastError
from closecast.forecaster import Forecaster

log = logging.getLogger(__name__)


class ModelHolder:
    """Holds the served ``Forecaster`` of one model name (or None before the first load) for one app instance.

    ``registry_root`` is the registry (CLOSECAST_MODEL_DIR); ``model_dir`` is this model's directory in it.
    """

    def __init__(
        self,
        registry_root: Path,
        providers: str = "auto",
        ort_threads: int = 1,
        on_swap: Callable[[Forecaster], None] | None = None,
        on_reload_failed: Callable[[str, Exception], None] | None = None,
        on_fallback: Callable[[str], None] | None = None,
        model: str = "default",
    ) -> None:
        self.providers = providers
        self.ort_threads = ort_threads
        self._on_swap = on_swap
        self._on_reload_failed = on_reload_failed
        self._on_fallback = on_fallback
        self.model = model
        self.registry_root = registry_root
        files = pointer_store.FilePointers(registry_root)
        self.model_dir = files.model_dir_of(model)
        self.pointers: pointer_store.PointerStore = files
        self._fallback_stamp: tuple[int, int] | str | None = "never"  # pointer write last reported
        self._current: Forecaster | None = None
        self._lock = threading.Lock()
        # (version, pointer stamp) of the last refused load: retried only once the pointer is written again
        self._refused: tuple[str, tuple[int, int] | None] | None = None

    @property
    def current(self) -> Forecaster | None:
        """The model serving now; read it once per request."""
        return self._current

    def load_version(self, version: str) -> Forecaster:
        """Load and verify ``model_dir/version`` without serving it; raises ``BundleInvalid``. With an object
        store, the pointer store first brings the version into the local cache (``fetch``)."""
        fetch = getattr(self.pointers, "fetch", None)
        if fetch is not None and registry.is_valid_version(version):
            fetch(self.model, version)
        if not registry.is_valid_version(version) or not (self.model_dir / version).is_dir():
            raise BundleInvalid(f"version {version!r} is not a bundle directory in the registry")
        return load_forecaster(self.model_dir / version, self.providers, self.ort_threads)

    def load_current(self) -> Forecaster:
        """Load the pointer's version or, when it is unusable, the newest promoted version that verifies."""
        failures: list[str] = []
        for version in self.pointers.candidates(self.model):
            try:
                forecaster = self.load_version(version)
            except (ClosecastError, OSError) as exc:
                log.error("model %s failed verification: %s", version, exc)
                failures.append(f"{version}: {exc}")
                continue
            self._report_fallback(forecaster.version)
            return forecaster
        problem = self._read_pointer().problem or "the `current` pointer"
        tried = f"; tried {'; '.join(failures)}" if failures else ""
        raise BundleInvalid(
            f"no servable version of model {self.model!r} in the registry: {problem} and no promoted version "
            f"verifies{tried}; train one with `python -m training train --csv FILE --registry DIR --model "
            f"{self.model} --promote` or set CLOSECAST_MODEL_DIR"
        )

    def _report_fallback(self, serving: str, pointed: str | None = None) -> None:
        """Log and count, once per pointer write, that the pointer could not be followed (``pointed``: the
        servable version the pointer names, when just read: serving it needs no second read)."""
        if pointed is not None and pointed == serving:
            self._fallback_stamp = "never"
            return
        pointer = self._read_pointer()
        if pointer.version == serving:
            self._fallback_stamp = "never"
            return
        stamp = self._pointer_stamp()
        if stamp == self._fallback_stamp:
            return
        self._fallback_stamp = stamp
        reason = (
            pointer.problem or f"the `current` pointer names {pointer.version}, which failed verification"
        )
        log.warning("%s; serving %s, the last promoted version that verifies", reason, serving)
        if self._on_fallback is not None:
            self._on_fallback(reason)

    def swap(self, forecaster: Forecaster) -> Forecaster | None:
        """Serve ``forecaster`` from now on (atomic reference replace); returns the one it replaces."""
        with self._lock:
            previous = self._swap_locked(forecaster)
        self._log_swap(previous, forecaster)
        return previous

    def _swap_locked(self, forecaster: Forecaster) -> Forecaster | None:
        previous, self._current = self._current, forecaster
        self._refused = None
        if self._on_swap is not None:
            self._on_swap(forecaster)
        return previous

    @staticmethod
    def _log_swap(previous: Forecaster | None, forecaster: Forecaster) -> None:
        if previous is None or previous.version != forecaster.version:
            log.info("now serving model %s on %s", forecaster.version, forecaster.provider)

    def reload_if_changed(self, state: registry.PointerState | None = None) -> Forecaster | None:
        """Blocking: when the pointer names another version, load, verify and swap it in.

        Returns the new forecaster, or None when nothing changed, the new bundle was refused (logged; the
        old model keeps serving) or the pointer moved again while it loaded. A refused version is tried again
        only after the pointer file is rewritten. ``state``: the pointer as the caller just read it (one
        read per poll, ``PointerStore.state``), else read here.
        """
        state = state or self.pointers.state(self.model)
        stamp, candidates = state.stamp, state.candidates
        current = self._current
        if not candidates or (current is not None and current.version == candidates[0]):
            if current is not None:
                self._report_fallback(current.version, state.pointed)
            return None
        version = candidates[0]
        if self._refused == (version, stamp):
            return None
        try:
            forecaster = self.load_version(version)
        except (ClosecastError, OSError) as exc:
            self._refused = (version, stamp)
            log.error("refused model %s, keeping %s: %s", version, current and current.version, exc)
            if self._on_reload_failed is not None:
                self._on_reload_failed(version, exc)
            return None
        # The load took a while: a promotion or rollback may have moved the pointer (and swapped its model
        # in) meanwhile. Swap only what the pointer still names, checked under the lock `swap` takes, so a
        # stale load never replaces a newer choice; the next tick follows the new pointer.
        with self._lock:
            pointed = self.pointers.current(self.model)
            if pointed != version:
                log.info("dropped model %s: the pointer moved to %s while it was loading", version, pointed)
                return None
            previous = self._swap_locked(forecaster)
        self._log_swap(previous, forecaster)
        return forecaster

    def _read_pointer(self) -> registry.PointerRead:
        """The pointer as its store holds it (a database store reads its row, the files their file)."""
        return self.pointers.read_pointer(self.model)

    def _pointer_stamp(self) -> tuple[int, int] | None:
        """Identity of the pointer's last write: the file's inode and mtime, or a database's serial."""
        return self.pointers.stamp(self.model)


async def watch_pointer(holder: ModelHolder, interval_s: float) -> None:
    """Run until cancelled: every ``interval_s`` reload the model off the event loop if the pointer moved.

    An unexpected error ends the loop: it runs supervised (``app/background.py``), which logs and counts the
    failure, shows it on ``/readyz`` and starts the watcher again after a backoff.
    """
    while True:
        await anyio.sleep(interval_s)
        await anyio.to_thread.run_sync(holder.reload_if_changed)
