"""Run one action per block on a few threads: the writers' compiled loops release the GIL, so
blocks of rows are padded and scaled on every core the process may use."""
from __future__ import annotations

import os
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
