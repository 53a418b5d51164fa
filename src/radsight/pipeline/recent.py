"""A few recent results kept by key, so work done at one step is not done again at the next (an upload decoded
once, the upload check's classifier pass reused by the analysis that follows it)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

KEPT = 8  # a burst's later uploads are made again rather than held: memory stays bounded


class Recent:
    """At most ``kept`` values by key; the oldest goes first. Each is taken once. Thread-safe."""

    def __init__(self, kept: int = KEPT):
        self.kept = kept
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.kept:
                self._entries.popitem(last=False)

    def take(self, key: Hashable) -> Any | None:
        """The value kept for ``key``, removed; None when none is."""
        with self._lock:
            return self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
