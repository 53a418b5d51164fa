"""Files analyzed at once: a bounded, ordered map on threads or any executor, and how the CPU cores are shared
out."""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

T, R = TypeVar("T"), TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in order, at most twice ``workers`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    yield from in_order(ThreadPoolExecutor(workers, thread_name_prefix="radsight"), fn, items, 2 * workers)


def in_order(pool: Executor, fn: Callable[[T], R], items: Iterable[T], in_flight: int) -> Iterator[R]:
    """``map(fn, items)`` on ``pool`` (shut down at the end), results in order, at most ``in_flight`` items
    submitted and not yet yielded."""
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= in_flight:
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
