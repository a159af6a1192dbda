"""Threads for the writers: tasks per block on every core the process may use (the compiled
loops release the GIL), and one thread that writes, in submission order."""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

MAX_THREADS = 4


def worker_threads() -> int:
    """Threads for block work: the cores this process may run on (a batch job's share), at most 4
    (beyond that the loops wait on memory, not on cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def run_all(tasks: Iterable[Callable[[], object]], threads: int | None = None) -> int:
    """Call every task on ``threads`` threads and return how many ran.

    Tasks are taken from ``tasks`` (on the calling thread, which may read files meanwhile) only
    while fewer than two per thread wait, so memory holds a bounded number of them. The first
    error is raised once the tasks already started have finished; the rest are not started.
    """
    threads = threads or worker_threads()
    pending: deque[Future] = deque()
    done = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="block") as pool:
        try:
            for task in tasks:
                pending.append(pool.submit(task))
                while len(pending) > 2 * threads:
                    pending.popleft().result()
                    done += 1
            while pending:
                pending.popleft().result()
                done += 1
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return done


class WriteQueue:
    """One thread that runs writes in the order they are submitted; use as a context manager.

    With ``max_pending``, :meth:`submit` first waits until fewer writes than that are queued or
    running, which bounds the memory their data holds. Leaving the block waits for every write
    and raises the first that failed; a failure is also raised by the next :meth:`submit`, so
    producers stop early.
    """

    def __init__(self, max_pending: int | None = None) -> None:
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="write")
        self._futures: deque[Future] = deque()
        self._lock = threading.Lock()

    def __enter__(self) -> "WriteQueue":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._raise_failed(wait=True)
        finally:
            self._pool.shutdown(wait=True)

    def submit(self, write: Callable[..., object], *args: object, then: Callable[[], object] | None = None) -> None:
        """Queue ``write(*args)``, then ``then()`` whether it succeeded or not (to hand back a buffer)."""
        self._raise_failed(wait=False)
        while self.max_pending is not None and len(self._futures) >= self.max_pending:
            with self._lock:
                oldest = self._futures.popleft()
            oldest.result()

        def run() -> None:
            try:
                write(*args)
            finally:
                if then is not None:
                    then()

        future = self._pool.submit(run)
        with self._lock:
            self._futures.append(future)

    def _raise_failed(self, wait: bool) -> None:
        with self._lock:
            futures = list(self._futures)
        for future in futures:
            if wait or future.done():
                future.result()
        with self._lock:
            while self._futures and self._futures[0].done():
                self._futures.popleft()
