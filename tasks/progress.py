"""Progress of running tasks: what a task reports, and the channel that carries it to ``tracerflow run``.

A task reports a fraction done and a status message with real totals and units
(:meth:`~tracerflow.tasks.base.TracerflowTask.report`). Each report goes to luigi's scheduler as
the task's progress percentage and status message (luigid shows both on its web page and in its
API) and, when ``tracerflow run`` listens (:func:`listen`), onto a queue its terminal display
reads (:mod:`tracerflow.workflows.display`). Tasks run in the listening process or in worker
processes forked from it, so a queue made before the run reaches both.
"""
from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

#: Seconds between two reports of one task that the scheduler is sent.
MIN_INTERVAL = 1.0

_channel: dict[str, Any] = {"queue": None}


def listen() -> "multiprocessing.queues.Queue":
    """A queue every task report of this process and its forked workers goes to from now on."""
    channel = multiprocessing.get_context("fork").Queue()
    _channel["queue"] = channel
    return channel


def stop_listening() -> None:
    _channel["queue"] = None


def publish(event: dict[str, Any]) -> None:
    """Put ``event`` on the listening queue, if any (never blocks, never fails a task)."""
    channel = _channel["queue"]
    if channel is None:
        return
    try:
        channel.put_nowait({**event, "time": time.time()})
    except (queue.Full, OSError, ValueError):
        pass


def count(done: int | float, total: int | float, unit: str) -> str:
    """``12,000 of 50,000 events``; a count without a known total reads ``12,000 events``."""
    if total is None or total <= 0:
        return f"{int(done):,} {unit}"
    return f"{int(done):,} of {int(total):,} {unit}"


class Throttle:
    """Whether a report is due: one ``interval`` seconds after the last (or after the throttle was
    made), or a final one once anything was reported or the task has run that long: a task done
    within ``interval`` reports nothing (its end says it all, and each report costs a request to
    the scheduler)."""

    def __init__(self, interval: float = MIN_INTERVAL, at_once: bool = False) -> None:
        self.interval = interval
        self.started = time.monotonic()
        self.last = -float("inf") if at_once else self.started  # at_once: the first report is due
        self.reported = False

    def due(self, final: bool = False) -> bool:
        now = time.monotonic()
        if now - self.last >= self.interval or (final and (self.reported or now - self.started >= self.interval)):
            self.last, self.reported = now, True
            return True
        return False
