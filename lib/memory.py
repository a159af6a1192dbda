"""Keep a long-running process's resident memory at the size of what it holds, and its
garbage collector out of the way of short, allocation-heavy work.

glibc raises its mmap threshold each time a large block is freed, after which chunk-sized
numpy arrays come from the heap, and freed heap pages stay resident: a task's RSS then grows
with the number of chunks it has processed, not with the chunk. Trimming the heap once per
chunk hands those pages back while keeping allocation inside a chunk as fast as usual.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from contextlib import contextmanager
from typing import Iterator


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the system (glibc ``malloc_trim``); False where unavailable."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block (the whole process's, as ``gc.disable``).

    For work that allocates many short-lived objects and makes no reference cycles: a full
    collection triggered there walks every object the imports made, ~150 ms with torch and
    tensorflow loaded, longer than some of the writes it would interrupt. Reference counting
    still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
