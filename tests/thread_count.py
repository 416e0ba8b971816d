"""Thread counts of this process, for the runtime-hygiene tests (imported by child
interpreters too: they run with the tests folder on PYTHONPATH)."""

from __future__ import annotations

import os
import time


def thread_count() -> int:
    """Threads of this process listed now."""
    return len(os.listdir("/proc/self/task"))


def settled_thread_count() -> int:
    """The thread count once it has held for 50 ms (at most 3 s). A joined worker may still
    be listed for a moment: pthread_join returns when the thread has finished, slightly
    before the kernel drops its /proc entry, and later on a busy machine."""
    last, held = thread_count(), 0
    for _ in range(300):
        time.sleep(0.01)
        now = thread_count()
        held = held + 1 if now == last else 0
        last = now
        if held >= 5:
            break
    return last
