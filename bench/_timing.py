"""Shared measuring helper for the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

Op = Callable[[], Awaitable[Any]]


async def interleaved_medians(
    ops: dict[str, Op], calls: int, prepare: dict[str, Op] | None = None
) -> dict[str, float]:
    """Median microseconds per call of each op. The ops take turns call by call (after a
    warm-up of a tenth as many), so bursts of machine noise fall on all of them alike, and
    the order rotates from round to round, so no op always comes first.
    ``prepare[name]``, when given, runs untimed before each call of that op."""
    samples: dict[str, list[float]] = {name: [] for name in ops}
    items = list(ops.items())
    before = prepare or {}
    for _ in range(calls // 10):
        for name, op in items:
            if name in before:
                await before[name]()
            await op()
    for turn in range(calls):
        # Each round starts one op later: whichever runs first after another op's untimed
        # preparation (or after the previous round) pays for it, so no op always does.
        shift = turn % len(items)
        for name, op in items[shift:] + items[:shift]:
            if name in before:
                await before[name]()
            start = time.perf_counter_ns()
            await op()
            samples[name].append((time.perf_counter_ns() - start) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}
