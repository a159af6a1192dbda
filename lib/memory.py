"""Keep a long-running process's resident memory at the size of what it holds.

glibc raises its mmap threshold each time a large block is freed, after which chunk-sized
numpy arrays come from the heap and freed chunks stay resident: a task's RSS then grows
with the number of chunks it has processed, not with the chunk. Fixing the threshold makes
every large array its own mapping, returned to the system when freed.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def return_large_blocks_to_system() -> bool:
    """Fix glibc's mmap threshold at 128 KiB; return whether it was set (False off glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
