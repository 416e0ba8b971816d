"""Benchmark-only reference: a plain hand-written AVX-512 top-k Hamming loop.

``_naive_avx512.c`` is compiled once per process with the system C compiler and called
through ctypes (which releases the GIL), so queries split across threads run in parallel.
Not part of the package; used only to put ``deephash_ext.search`` timings in context.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import os
import shutil
import subprocess
import tempfile
import threading

import numpy as np

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_naive_avx512.c")
_FLAGS = ["-O3", "-mavx512f", "-mavx512vl", "-mavx512vpopcntdq", "-shared", "-fPIC"]
_lock = threading.Lock()
_lib = None
_tmpdir = None  # kept alive for the life of the process


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def naive_available() -> tuple[bool, str]:
    """Whether the naive AVX-512 reference can run here, and if not, why."""
    if _compiler() is None:
        return False, "no C compiler (cc or gcc) on PATH"
    missing = {"avx512f", "avx512_vpopcntdq"} - _cpu_flags()
    if missing:
        return False, "CPU lacks " + ", ".join(sorted(missing)) + " (per /proc/cpuinfo)"
    return True, ""


def _load():
    global _lib, _tmpdir
    with _lock:
        if _lib is not None:
            return _lib
        cc = _compiler()
        if cc is None:
            raise RuntimeError("naive AVX-512 reference needs a C compiler (cc or gcc) on PATH")
        _tmpdir = tempfile.TemporaryDirectory(prefix="deephash_naive_")
        so = os.path.join(_tmpdir.name, "_naive_avx512.so")
        res = subprocess.run([cc, *_FLAGS, "-o", so, _SRC], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"compiling {_SRC} with {cc} failed:\n{res.stderr}")
        lib = ctypes.CDLL(so)
        lib.naive_knn.restype = None
        lib.naive_knn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        _lib = lib
        return lib


def naive_search(codes, queries, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by Hamming distance, ties to the smaller index; sorted by (distance, index)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    queries = np.ascontiguousarray(queries, dtype=np.uint8)
    if codes.ndim != 2 or queries.ndim != 2 or codes.shape[1] != queries.shape[1]:
        raise ValueError("codes and queries must be 2-D uint8 arrays of equal width")
    n, cb = codes.shape
    nq = queries.shape[0]
    if cb == 0 or cb % 8:
        raise ValueError("code width must be a positive multiple of 8 bytes")
    if not 1 <= k <= n:
        raise ValueError("k must be in [1, n]")
    lib = _load()
    out_d = np.empty((nq, k), dtype=np.int32)
    out_i = np.empty((nq, k), dtype=np.int64)
    threads = max(1, min(int(threads), nq)) if nq else 1
    bounds = np.linspace(0, nq, threads + 1).astype(np.int64)

    def run(lo: int, hi: int) -> None:
        if hi > lo:
            lib.naive_knn(
                codes.ctypes.data,
                n,
                cb,
                queries[lo:hi].ctypes.data,
                hi - lo,
                k,
                out_d[lo:hi].ctypes.data,
                out_i[lo:hi].ctypes.data,
            )

    if threads == 1:
        run(0, nq)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(run, int(a), int(b)) for a, b in itertools.pairwise(bounds)]:
                f.result()
    return out_d, out_i
