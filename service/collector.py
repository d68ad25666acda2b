"""Fewer garbage collections, full ones above all, while bulk work runs in this process.

A pull or a remap keeps thousands of decoded payloads alive for a moment: each page parsed,
mapped and written adds tens of thousands of objects to the collector's oldest generation,
which sets off its full passes, and each full pass walks the whole heap. Measured on a Jira
backfill of 10,000 issues: ten full passes took 1.4 s of its 8 s of CPU. Decoded JSON holds no
cycles, so its memory comes back by reference counts anyway. The young passes are made
rarer too: the payloads outlive them, so every pass walked them again for nothing (0.4 s of
that backfill at Python's thresholds, 0.2 s at these).

Process-wide, so counted: the thresholds come back when the last bulk job ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# while bulk work runs: objects made between young passes (Python's default: 700), young
# passes between middle ones (10), middle passes between full ones (10)
YOUNG, MIDDLE, FULL = 50_000, 20, 1000

_lock = threading.Lock()
_running = 0
_saved = list(gc.get_threshold())


@contextmanager
def fewer_collections() -> Iterator[None]:
    global _running
    with _lock:
        if _running == 0:
            _saved[:] = gc.get_threshold()
            gc.set_threshold(max(_saved[0], YOUNG), max(_saved[1], MIDDLE), max(_saved[2], FULL))
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_saved)
