"""Memory a process no longer uses, handed back to the system. glibc gives each thread that allocates its own heap
arena (up to eight a core) and keeps freed memory mapped until asked to trim it: a server's request threads then
hold the peak of a burst for good."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


@lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only
    except OSError:
        return None


def release_memory() -> bool:
    """Collect garbage and return the C heap's free pages to the system; whether the heap could be trimmed (not
    on a C library without ``malloc_trim``, e.g. musl or macOS)."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def limit_heap_arenas(count: int = 2) -> bool:
    """At most ``count`` glibc heap arenas for the threads created from now on (fewer arenas, less memory held
    apart in each); whether the C library took it."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, count))
