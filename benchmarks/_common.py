"""Helpers shared by the benchmark scripts: machine description and best-of-n timing."""

from __future__ import annotations

import platform
import time


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def best_time(fn, repeats: int, before=None) -> tuple[float, object]:
    """Best wall time of `repeats` calls of fn (each preceded by before(), untimed), and
    the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
