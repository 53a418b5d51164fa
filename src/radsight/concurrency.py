"""Files analyzed at once: a bounded, ordered thread map, and how the CPU cores are shared out."""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T, R = TypeVar("T"), TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in order, at most twice ``workers`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool, pending = ThreadPoolExecutor(workers, thread_name_prefix="radsight"), deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error, Ctrl-C or a consumer that stops early: files not yet started are not analyzed
        pool.shutdown(wait=True, cancel_futures=True)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(files: int) -> int:
    """Files analyzed at once: one a core, no more than there are files."""
    return max(1, min(files, cpu_cores()))


def threads_per_worker(workers: int) -> int:
    """ONNX Runtime threads for each of ``workers`` concurrent analyses: the cores shared out (0: all of them)."""
    return 0 if workers <= 1 else max(1, cpu_cores() // workers)
