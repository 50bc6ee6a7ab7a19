"""Versions asked for by id (the inference protocol's ``/v2/models/{model}/versions/{version}``) that the
model's ``current`` pointer does not serve: loaded and verified on first use, the last few kept (LRU).

The version a name serves is always ``LoadedModels``'; this only holds the others a caller pins, so a client
can compare two versions side by side without promoting either.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from app.inference.models import LoadedModels
from closecast import registry
from closecast.forecaster import Forecaster


class PinnedVersions:
    """Up to ``capacity`` pinned ``(model, version)`` forecasters, least recently used evicted first."""

    def __init__(self, models: LoadedModels, capacity: int) -> None:
        self.models = models
        self.capacity = capacity
        self._lru: OrderedDict[tuple[str, str], Forecaster] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time: pinning is rare, a double load is not

    def exists(self, name: str, version: str) -> bool:
        """Whether ``version`` is a bundle directory of model ``name``."""
        return registry.is_valid_version(version) and registry.is_bundle(self.models.model_dir(name), version)

    def get(self, name: str, version: str) -> Forecaster:
        """Blocking: ``version`` of model ``name``, loaded and verified first when not held; raises
        ``BundleInvalid`` when it does not verify. Check ``exists`` first."""
        key = (name, version)
        with self._lock:
            if (found := self._lru.get(key)) is not None:
                self._lru.move_to_end(key)
                return found
        with self._load_lock:
            with self._lock:
                if (found := self._lru.get(key)) is not None:
                    return found
            forecaster = self.models.holder_of(name).load_version(version)
            with self._lock:
                self._lru[key] = forecaster
                while len(self._lru) > self.capacity:
                    self._lru.popitem(last=False)
        return forecaster
