"""Timing several ways of reading the same films in one run, taking turns film by film so that the machine's
noise falls on each alike; medians and ratios to a named peer."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_in_turns(films: list, runs: dict[str, Callable]) -> dict[str, list[float]]:
    """Seconds each of ``runs`` took on each film (after one warm-up call each on the first film)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn(films[0])
    for film in films:
        for name, fn in runs.items():
            start = time.perf_counter()
            fn(film)
            times[name].append(time.perf_counter() - start)
    return times


def print_medians(times: dict[str, list[float]], peer: str, threads: int) -> None:
    base = statistics.median(times[peer])
    width = max(map(len, times))
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:{width}s}  median {median * 1000:7.1f} ms a film ({len(values)} films, {threads} thread)  "
              f"ratio to {peer}: {median / base:.2f}")
