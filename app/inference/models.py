"""Every named model a worker serves: the default model always loaded, the others loaded on first use and
kept in an LRU of ``ModelHolder`` bounded by ``CLOSECAST_MAX_LOADED_MODELS``.

Each name has its own ``ModelHolder``, so each is verified on load, follows its own ``current`` pointer and
is hot-swapped on its own: a promotion of one model never touches another's session. A request takes the
``Forecaster`` once (``forecaster_of``) and keeps it, so neither a swap nor an eviction can fail a request
that is under way (an evicted session is freed when its last request lets go of it).

The first request to a model that is not loaded loads it off the event loop; concurrent first requests for
the same name wait for one load (a lock per name) instead of loading it twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from app.config import Settings
from app.inference.holder import ModelHolder
from app.metrics import Metrics
from closecast import pointer_store, registry
from closecast.bundle import read_manifest
from closecast.errors import ClosecastError, InputInvalid, Loc, ModelNotFound, ModelNotReady, Problem
from closecast.forecaster import FeatureMap, Forecaster, SeriesLike
from closecast.objectstore import StoreRegistry
from closecast.results import PriceRows

log = logging.getLogger(__name__)


class LoadedModels:
    """The holders of one app instance by model name; ``default`` is the default model's holder."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.root = settings.model_dir
        self.default_name = settings.default_model
        self.providers = settings.providers
        self.ort_threads = settings.ort_threads
        self.capacity = settings.max_loaded_models - 1  # models besides the default one
        self.max_models = settings.max_models
        self.metrics = metrics
        self.files = pointer_store.FilePointers(self.root)
        self.pointers: pointer_store.PointerStore = self.files  # the database's, with CLOSECAST_DATABASE_URL
        self.bundles: StoreRegistry | None = None  # with CLOSECAST_MODEL_STORE: the registry; root caches it
        self.default = self._new_holder(self.default_name)
        self._lru: OrderedDict[str, ModelHolder] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def use_pointers(
        self, pointers: pointer_store.PointerStore, bundles: StoreRegistry | None = None
    ) -> None:
        """Read every model's pointer from ``pointers`` (app/storage/backends.py: a database) from now on, and
        with ``bundles`` (an object store) list, count and delete versions there, not in the local cache."""
        self.pointers = pointers
        self.default.pointers = pointers
        self.bundles = bundles

    def _new_holder(self, name: str) -> ModelHolder:
        default = name == self.default_name
        m = self.metrics
        holder = ModelHolder(
            self.root,
            self.providers,
            self.ort_threads,
            on_swap=lambda f: m.model_swapped(f, name, default),
            on_reload_failed=lambda version, exc: m.model_refused(version, exc, name),
            on_fallback=lambda reason: m.pointer_fell_back(reason, name),
            model=name,
        )
        holder.pointers = self.pointers
        return holder

    # --- names -------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Model names in the registry (directories with a version or a pointer), sorted; with a database,
        also those it has a pointer for; with an object store, the store's instead of the local cache's
        (a model deleted through another replica is gone, one trained elsewhere is there)."""
        shared = getattr(self.pointers, "names", None)
        pointed = set(shared()) if shared is not None else set()
        if self.bundles is not None:
            return sorted({*self.bundles.models(), *pointed})
        return sorted({*registry.list_models(self.root), *pointed})

    def catalog(self) -> dict[str, list[str]]:
        """Every model name with its stored versions, oldest first (``GET /models``). With an object store:
        one listing of the store, after which the local cache drops what the store no longer has."""
        shared = getattr(self.pointers, "names", None)
        if self.bundles is None:
            return {name: registry.list_versions(self.model_dir(name)) for name in self.names()}
        stored = self.bundles.sync(self._served_versions())
        return {name: stored.get(name, []) for name in sorted({*stored, *(shared() if shared else [])})}

    def versions(self, name: str) -> list[str]:
        """The stored versions of ``name``, oldest first: the object store's, else the model dir's."""
        if self.bundles is None:
            return registry.list_versions(self.model_dir(name))
        return self.bundles.sync(self._served_versions()).get(name, [])

    def has_version(self, name: str, version: str) -> bool:
        """Whether ``version`` of ``name`` is stored (in the object store, whatever this cache holds)."""
        if self.bundles is None:
            return registry.is_bundle(self.model_dir(name), version)
        return self.bundles.present(name, version)

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        """A stored version's manifest (not verified: loading verifies); ``BundleInvalid`` when absent."""
        if self.bundles is None:
            return read_manifest(self.model_dir(name) / version)
        return self.bundles.manifest(name, version)

    def _served_versions(self) -> list[tuple[str, str]]:
        """(model, version) of every model in memory: the cache never drops what this process serves."""
        with self._lock:
            holders = [self.default, *self._lru.values()]
        return [(h.model, h.current.version) for h in holders if h.current is not None]

    def require(self, name: str) -> None:
        """``ModelNotFound`` (naming a few known ones) unless ``name`` is a model of the registry: one
        listing for both the check and the answer (with a store, a listing of the bucket)."""
        known = self.names()
        if not (registry.is_valid_model_name(name) and name in known):
            raise ModelNotFound(name, known)

    def model_dir(self, name: str) -> Path:
        return self.files.model_dir_of(name)

    def loaded_names(self) -> list[str]:
        """The default model and the LRU's, least recently used first (after the default)."""
        with self._lock:
            return [self.default_name, *self._lru]

    # --- serving -----------------------------------------------------------------------------------------

    def loaded(self, name: str) -> Forecaster | None:
        """The model serving ``name`` when it is in memory (and marks it used), else None. Never blocks."""
        if name == self.default_name:
            return self.default.current
        with self._lock:
            holder = self._lru.get(name)
            if holder is None:
                return None
            self._lru.move_to_end(name)
        return holder.current

    def forecaster_of(self, name: str) -> Forecaster:
        """Blocking: the model serving ``name``, loaded and verified first when it is not in memory.

        Raises ``ModelNotFound`` for a name the registry lacks, ``ModelNotReady`` before the default model
        is loaded, ``BundleInvalid`` when no promoted version of ``name`` verifies.
        """
        if name == self.default_name:
            if (served := self.default.current) is None:
                raise ModelNotReady()
            return served
        if (served := self.loaded(name)) is not None:
            return served
        self.require(name)
        with self._lock:
            load_lock = self._loading.setdefault(name, threading.Lock())
        with load_lock:  # one load per name; the others wait for it and take its result
            if (served := self.loaded(name)) is not None:
                return served
            holder = self._new_holder(name)
            holder.swap(holder.load_current())
            self.metrics.model_loads.labels(name, "loaded").inc()
            self._insert(name, holder)
        assert holder.current is not None
        return holder.current

    async def aforecaster_of(self, name: str) -> Forecaster:
        """``forecaster_of`` for the event loop: a loaded model at once, a cold one loaded in a thread."""
        served = self.loaded(name)
        if served is not None:
            return served
        return await anyio.to_thread.run_sync(self.forecaster_of, name)

    def _insert(self, name: str, holder: ModelHolder) -> None:
        evicted: list[str] = []
        with self._lock:
            self._lru[name] = holder
            # With a capacity of 0 the model just loaded leaves at once: it serves the request that loaded it.
            while len(self._lru) > self.capacity:
                old, _ = self._lru.popitem(last=False)
                evicted.append(old)
            self.metrics.models_loaded.set(1 + len(self._lru))
        for old in evicted:
            log.info("evicted model %s from memory (CLOSECAST_MAX_LOADED_MODELS)", old)
            self.metrics.model_unloaded(old)

    def forget(self, name: str) -> None:
        """Drop ``name`` from memory (deleted, or its directory vanished); requests under way finish."""
        with self._lock:
            holder = self._lru.pop(name, None)
            self.metrics.models_loaded.set(1 + len(self._lru))
        if holder is not None:
            self.metrics.model_unloaded(name)

    # --- promotion and the pointer watch -----------------------------------------------------------------

    def holder_of(self, name: str) -> ModelHolder:
        """The holder a promotion of ``name`` goes through: the loaded one (so it swaps at once), else a fresh
        one that is not in memory (the next request loads what the pointer names)."""
        if name == self.default_name:
            return self.default
        with self._lock:
            holder = self._lru.get(name)
        return holder if holder is not None else self._new_holder(name)

    def reload_model(self, name: str) -> None:
        """Blocking: ``name`` follows its pointer now if it is in memory (a notified promotion); a model
        that is not loaded has nothing to follow (its next request loads what the pointer names). The
        default's failure propagates (its watcher is supervised); another's is logged."""
        if name == self.default_name:
            self.default.reload_if_changed()
            return
        with self._lock:
            holder = self._lru.get(name)
        if holder is not None:
            self._reload_one(name, holder)

    def reload_every(self) -> None:
        """Blocking: the default and every loaded model follow their pointers now."""
        self.default.reload_if_changed()
        self.reload_loaded()

    def _reload_one(self, name: str, holder: ModelHolder) -> None:
        try:
            state = self.pointers.state(name) if holder.model_dir.is_dir() else None
            if state is None or self._deleted(state):
                log.info("model %s was deleted from the registry; unloading it", name)
                self.forget(name)
                return
            holder.reload_if_changed(state)
        except ClosecastError as exc:  # e.g. the database is down: one line, not a traceback per interval
            log.warning("checking the pointer of model %s failed: %s", name, exc.message)
        except Exception:  # one model's trouble must not stop the others from following theirs
            log.exception("checking the pointer of model %s failed", name)

    def reload_loaded(self) -> None:
        """Blocking: every loaded model but the default follows its pointer (the default: watch_pointer)."""
        with self._lock:
            holders = list(self._lru.items())
        for name, holder in holders:
            self._reload_one(name, holder)

    def _deleted(self, state: registry.PointerState) -> bool:
        """With an object store (where the cache may linger), the model's database pointer is gone (its
        directory is the sign without one): ``DELETE /models/{model}`` through any replica removes both.
        Read with the pointer the poll follows (``state``): one query per model and poll."""
        return self.bundles is not None and state.stamp is None


async def watch_models(models: LoadedModels, interval_s: float) -> None:
    """Run until cancelled: every ``interval_s`` the loaded non-default models follow their pointers."""
    while True:
        await anyio.sleep(interval_s)
        await anyio.to_thread.run_sync(models.reload_loaded)


def forecast_per_model(
    forecasters: dict[str, Forecaster],
    names: Sequence[str],
    series: Sequence[SeriesLike],
    horizon: int,
    levels: Sequence[int],
    locs: Sequence[Loc],
    features: Sequence[FeatureMap | None] | None = None,
) -> tuple[PriceRows, dict[str, PriceRows]]:
    """A batch whose series name their models: one ``Forecaster.forecast_rows`` (one ONNX Runtime call per
    step) per model, the answers as one table in the order sent. Every series' length problem is
    reported, whatever its model, before anything runs. Returns the table and each model's own (for the
    metrics). A batch of one model (the usual) is passed through whole, with no per-series work here."""
    if len(forecasters) == 1:
        ((name, model),) = forecasters.items()
        rows = model.forecast_rows(series, horizon, levels, locs, _sent(features))
        return rows, {name: rows}
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    problems: list[Problem] = []
    for name, members in groups.items():
        try:
            forecasters[name].check_lengths([series[i] for i in members], [locs[i] for i in members])
        except InputInvalid as exc:
            problems += exc.problems
    if problems:
        raise InputInvalid(sorted(problems, key=lambda p: _series_index(p.loc)))
    results: dict[str, PriceRows] = {}
    for name, members in groups.items():
        results[name] = forecasters[name].forecast_rows(
            [series[i] for i in members],
            horizon,
            levels,
            [locs[i] for i in members],
            _sent([features[i] for i in members] if features is not None else None),
        )
    return PriceRows.joined([(groups[name], rows) for name, rows in results.items()], len(series)), results


def _sent(features: Sequence[FeatureMap | None] | None) -> Sequence[FeatureMap | None] | None:
    """A batch's features, or None when no series sent any."""
    return features if features is not None and any(f is not None for f in features) else None


def _series_index(loc: Loc) -> int:
    return next((part for part in loc if isinstance(part, int)), 0)
