"""RBM runtime hygiene: next to torch, RBM training uses its own threads only.

Runs in a fresh interpreter: torch is imported first and its OpenMP pool started, then an RBM
is trained with 2 threads. BLAS (scipy-openblas32) must not add a thread pool of its own,
CPU time / wall time must stay within the thread count (a resource bound, not a speed
threshold: only extra busy threads can exceed it), and no thread may outlive the call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = """
import json, os, time
import torch
a = torch.randn(1024, 1024)
(a @ a).sum().item()                         # torch's pool is running now
import numpy as np
import sklearn.utils.validation              # imports scipy and its own BLAS before we count
import deephash_ext as dh
from thread_count import settled_thread_count, thread_count as threads
before_blas = threads()
from deephash_ext._blas import ensure_blas
ensure_blas()
after_blas = threads()
dh.set_num_threads(2)
rng = np.random.default_rng(0)
V = (rng.random((3000, 1024), dtype=np.float32) < 0.3).astype(np.float32)
model = dh.RBM(n_hidden=512, n_epochs=1, random_state=0)
model.fit(V[:200])                           # warm up
before = settled_thread_count()
cpu0, wall0 = time.process_time(), time.perf_counter()
model.set_params(n_epochs=3).fit(V)
cpu1, wall1 = time.process_time(), time.perf_counter()
# A lingering thread would still be there after a few seconds.
for _ in range(300):
    if threads() <= before:
        break
    time.sleep(0.01)
print(json.dumps({"before_blas": before_blas, "after_blas": after_blas, "before": before,
                  "after": threads(), "cpu": cpu1 - cpu0, "wall": wall1 - wall0}))
"""


def test_rbm_training_next_to_torch_adds_no_pool_and_no_busy_threads():
    pytest.importorskip("torch")
    tests_dir = str(Path(__file__).resolve().parent)  # the child imports thread_count
    path = os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["after_blas"] == out["before_blas"], "loading BLAS started a thread pool"
    assert out["after"] <= out["before"], "threads outlived the fit"
    assert out["wall"] >= 0.1, out
    assert out["cpu"] / out["wall"] <= 2 + 0.5, out
