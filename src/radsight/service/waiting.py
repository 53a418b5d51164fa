"""Clients that wait for a study's outcome (``GET /api/studies/{id}?wait=S``) are answered as soon as a worker of
this server records it, instead of at their next poll. A study another replica analyzes (PostgreSQL) is seen by
reading the store again every :data:`RECHECK_SECONDS`."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

MAX_WAIT_SECONDS = 30.0
RECHECK_SECONDS = 0.5
FINAL = ("done", "failed")


class Outcomes:
    def __init__(self):
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def recorded(self, study_id: str) -> None:
        """A worker recorded the study's outcome (from any thread)."""
        with self._lock:
            waiters = list(self._waiting.get(study_id, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    async def wait(self, study_id: str, read: Callable[[str], Awaitable], seconds: float):
        """What ``read(study_id)`` gives (the study, None when unknown) once the study is done or failed, or once
        ``seconds`` (at most :data:`MAX_WAIT_SECONDS`) have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(seconds, 0.0), MAX_WAIT_SECONDS)
        entry = (loop, asyncio.Event())
        with self._lock:  # listening before reading: an outcome recorded in between is not missed
            self._waiting.setdefault(study_id, []).append(entry)
        try:
            while True:
                study = await read(study_id)
                left = deadline - loop.time()
                if study is None or study.status in FINAL or left <= 0:
                    return study
                try:
                    await asyncio.wait_for(entry[1].wait(), min(left, RECHECK_SECONDS))
                except asyncio.TimeoutError:
                    pass
                entry[1].clear()
        finally:
            with self._lock:
                waiters = self._waiting[study_id]
                waiters.remove(entry)
                if not waiters:
                    del self._waiting[study_id]
