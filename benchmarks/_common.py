"""Helpers shared by the benchmark scripts: machine description, best-of-n timing
(alone or interleaved) and random codes."""

from __future__ import annotations

import platform
import time

import numpy as np


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


def best_of_rounds(fns: dict, rounds: dict) -> dict:
    """Best wall time of each function ``fns[name]``, called in turn within each round (so
    slow phases of a busy machine hit all of them alike), the order rotated by one each
    round (so no function always runs right after the same one, whose cache or memory
    state it would inherit); a function runs in the first ``rounds[name]`` rounds only."""
    best = dict.fromkeys(fns, float("inf"))
    names = list(fns)
    for round_ in range(max(rounds.values(), default=0)):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if round_ < rounds[name]:
                t0 = time.perf_counter()
                fns[name]()
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def random_codes(rng: np.random.Generator, n: int, code_bytes: int, chunk_bytes: int) -> np.ndarray:
    """n uniformly random codes, generated ``chunk_bytes`` at a time (peak memory: the codes
    plus one chunk)."""
    codes = np.empty((n, code_bytes), dtype=np.uint8)
    rows = max(1, chunk_bytes // code_bytes)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        chunk = rng.bytes((stop - start) * code_bytes)
        codes[start:stop] = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, code_bytes)
        del chunk
    return codes
