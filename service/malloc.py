"""Fewer malloc arenas for opsync's processes (glibc only; elsewhere nothing changes).

glibc gives a thread that allocates while another holds an arena's lock an arena of its own,
up to eight per core. A pull's threads (fetching, parsing, mapping, writing) each then keep
their own arena, and what a page's objects leave free in one arena is not reused by the
others: measured on a Jira backfill of 20,000 issues, peak RSS 228 MB with glibc's default
and 182 MB with two arenas, at the same speed. The threads take turns on the GIL anyway,
so more arenas buy no speed here. An operator's MALLOC_ARENA_MAX still wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


def fewer_arenas() -> bool:
    """Cap this process's malloc arenas at ARENAS; whether it was done. Call it before the
    process starts threads: arenas made before stay."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.util.find_library("c")
    if libc is None:
        return False
    return bool(ctypes.CDLL(libc).mallopt(_M_ARENA_MAX, ARENAS))
