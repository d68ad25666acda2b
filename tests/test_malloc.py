"""opsync's processes keep to two malloc arenas on glibc (see opsync.service.malloc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")

# Eight threads, alive at once, each allocate blocks that glibc's malloc serves (above Python's
# own allocator, below glibc's mmap threshold); then glibc's own report (malloc_info) counts the
# arenas ("heaps").
COUNT_ARENAS = """
import ctypes, ctypes.util, sys, threading
{setup}
together = threading.Barrier(8)
def allocate():
    blocks = [bytearray(2_000) for _ in range(50)]
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.open_memstream.restype = ctypes.c_void_p
text, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(text), ctypes.byref(size))
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(ctypes.string_at(text, size.value).decode().count("<heap nr="))
"""


def _arenas(setup: str, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    script = COUNT_ARENAS.format(setup=setup)
    return int(
        subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
        ).stdout
    )


def test_the_opsync_command_keeps_its_threads_to_two_arenas():
    assert _arenas("") > 2  # glibc's default: an arena per thread, up to eight per core
    assert _arenas("import opsync.cli") == 2


def test_an_operators_malloc_arena_max_is_left_as_set():
    assert _arenas("import opsync.cli", MALLOC_ARENA_MAX="3") == 3
