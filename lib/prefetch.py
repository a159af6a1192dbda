"""Run a producer one step ahead of its consumer in a background thread.

Reading a ROOT chunk (zlib in uproot) and compressing the previous one into HDF5 (lzf in
h5py) both release the GIL, so overlapping them uses a second core while memory stays
bounded by ``depth + 2`` items.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order while a thread produces up to ``depth`` items ahead.

    An exception raised by the producer is re-raised in the consumer at the same position;
    closing the generator early stops the producer after its current item.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(_DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            slots.put(_Failure(error))

    worker = threading.Thread(target=produce, name="tracerflow-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.01)
