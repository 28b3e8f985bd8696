"""Timing: warm-up, calibration, interleaved samples, medians with quartiles, GC off.

Every case is a zero-argument callable doing one operation. :func:`run_interleaved` warms each
case up, picks a per-case inner loop count so that one sample lasts about ``sample_time``
seconds, then takes ``samples`` rounds in which every case is sampled once, in a rotating
order, so that the floor, ours and the peers see the same machine noise.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Stat:
    """Seconds per operation: median and quartiles over ``n`` samples of ``inner`` calls each."""

    median: float
    q1: float
    q3: float
    n: int
    inner: int

    @classmethod
    def of(cls, values: list[float], inner: int = 1) -> Stat:
        """Summarise samples (seconds per operation)."""
        if len(values) == 1:
            return cls(values[0], values[0], values[0], 1, inner)
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3, len(values), inner)


@contextmanager
def gc_disabled() -> Iterator[None]:
    """Collect once, then keep the garbage collector off inside the block."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _time(fn: Callable[[], object], inner: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(inner):
        fn()
    return (clock() - start) / inner


def calibrate(fn: Callable[[], object], sample_time: float, max_inner: int = 100_000) -> int:
    """How many calls of ``fn`` take about ``sample_time`` seconds (at least one)."""
    inner = 1
    while True:
        elapsed = _time(fn, inner) * inner
        if elapsed >= sample_time / 4 or inner >= max_inner:
            break
        inner *= 4
    per_call = max(elapsed / inner, 1e-9)
    return max(1, min(max_inner, round(sample_time / per_call)))


def run_interleaved(cases: dict[str, Callable[[], object]], samples: int, sample_time: float,
                    warmup: int = 3, progress: Progress | None = None) -> dict[str, Stat]:
    """Time every case, interleaved; returns seconds per operation for each name."""
    names = list(cases)
    inner: dict[str, int] = {}
    results: dict[str, list[float]] = {name: [] for name in names}
    with gc_disabled():
        for index, name in enumerate(names):
            if progress:
                progress(f"warm-up {index + 1}/{len(names)} {name}")
            fn = cases[name]
            for _ in range(warmup):
                fn()
            inner[name] = calibrate(fn, sample_time)
        for round_ in range(samples):
            if progress:
                progress(f"sample {round_ + 1}/{samples} of {len(names)} cases")
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(_time(cases[name], inner[name]))
            gc.collect()  # between rounds, outside any timed region
    return {name: Stat.of(results[name], inner[name]) for name in names}
