"""Freed tensor memory, kept for the next pass.

By default glibc's malloc returns a large freed block to the kernel at once (a block over its
mmap threshold, or the free top of a heap) and the next allocation of that size faults in fresh
zeroed pages. A CPU pass of a detector allocates and frees the same large activations again and
again, and on a 2-core CPU it spent about as long in the kernel as in the convolutions:
bccd-demo's D-RISE preview (64 masked copies, one thread) took 20.9 s, 11.4 s with freed memory
kept. In a worker thread, malloc also gives
each thread its own arenas, capped at 64 MB a heap, so a large block there is mapped afresh every
time whatever the threshold; one arena keeps those too.

`keep_freed_memory()` sets both through `mallopt`, once, before the process starts threads: the
CLI's and the application's entry points call it. The cost is resident memory: up to
KEPT_BYTES of freed memory stays with the process. Anywhere but glibc (macOS, Windows, musl) it
does nothing. A user who sets glibc's own MALLOC_* variables keeps their settings.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
KEPT_BYTES = 1 << 30
SETTINGS = ((M_TRIM_THRESHOLD, KEPT_BYTES), (M_MMAP_THRESHOLD, KEPT_BYTES), (M_ARENA_MAX, 1))
USER_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory (module docstring); True when it took the settings,
    False where there is no glibc or the user set their own."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USER_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in SETTINGS)
