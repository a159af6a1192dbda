"""What ``tracerflow run`` shows while it runs, and the summary it prints at the end.

While luigi schedules, every task found incomplete is counted (luigi's DEPENDENCY_MISSING event,
fired in the scheduling process); while it runs, tasks report their starts, ends and progress on
the queue of :mod:`tracerflow.tasks.progress`, from this process or a forked worker. On a terminal
one status line is redrawn a few times a second: tasks done of total, and the running task's
own progress with its totals and units. When the output is not a terminal (a batch job's log, a
pipe), the same line is printed as a plain line every ``scheduler.progress_interval`` seconds
while it changes.
"""
from __future__ import annotations

import queue
import shutil
import sys
import threading
import time
from collections import Counter
from typing import Any, TextIO

import luigi
from luigi.execution_summary import _summary_dict

from tracerflow.tasks import STAGES, TracerflowTask
from tracerflow.tasks import progress as channel

#: Seconds between two redraws of the terminal line.
REDRAW = 0.2
#: Labels listed per status in the summary before "and N more".
LISTED = 5

_current: dict[str, Any] = {"display": None}


class RunDisplay:
    """Overall and per-task progress of one run, on ``stream`` (a terminal or not)."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 30.0, interactive: bool | None = None) -> None:
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.interval = interval
        self.to_run: set[str] = set()
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.running: dict[str, tuple[int, str]] = {}
        self._queue: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._shown = ""
        self._last_plain = 0.0

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> "RunDisplay":
        self._queue = channel.listen()
        _current["display"] = self
        self._thread = threading.Thread(target=self._loop, name="tracerflow-display", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._drain()
        _current["display"] = None
        channel.stop_listening()
        if self.interactive and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    # ------------------------------------------------------------------ state

    def scheduled(self, task: luigi.Task) -> None:
        if isinstance(task, TracerflowTask):
            self.to_run.add(task.label())

    def _apply(self, event: dict[str, Any]) -> None:
        label, state = event.get("task"), event.get("state")
        if state == "running":
            self.running[label] = (0, "")
        elif state == "progress":
            self.running[label] = (int(event.get("percent", 0)), str(event.get("message", "")))
        elif state in ("done", "failed"):
            self.running.pop(label, None)
            (self.done if state == "done" else self.failed).add(label)
            self.to_run.add(label)

    def _drain(self) -> None:
        while self._queue is not None:
            try:
                self._apply(self._queue.get_nowait())
            except (queue.Empty, OSError, ValueError, EOFError):
                return

    def line(self) -> str:
        """``[done/total tasks] <running task's progress>``."""
        total = len(self.to_run)
        head = f"[{len(self.done)}/{total} tasks" + (f", {len(self.failed)} failed" if self.failed else "") + "]"
        if not self.running:
            return head
        label, (percent, message) = next(reversed(self.running.items()))
        what = message or label
        more = f" (+{len(self.running) - 1} running)" if len(self.running) > 1 else ""
        return f"{head} {what} ({percent}%){more}"

    # ------------------------------------------------------------------ drawing

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._apply(self._queue.get(timeout=REDRAW))
                self._drain()
            except queue.Empty:
                pass
            except (OSError, ValueError, EOFError):
                return
            self._draw()

    def _draw(self) -> None:
        if not (self.running or self.done or self.failed):
            return  # still scheduling: the total is not known yet
        text = self.line()
        if self.interactive:
            width = shutil.get_terminal_size((100, 20)).columns
            text = text if len(text) < width else text[:width - 2] + "…"
            if text != self._shown:
                self.stream.write("\r\x1b[K" + text)
                self.stream.flush()
                self._shown = text
            return
        now = time.monotonic()
        if text != self._shown and now - self._last_plain >= self.interval:
            self.stream.write(f"tracerflow: {text}\n")
            self.stream.flush()
            self._shown, self._last_plain = text, now


def clear_line(stream: TextIO = sys.stderr) -> None:
    """Clear the status line before other text goes to the terminal (a failure block)."""
    display = _current["display"]
    if display is not None and display.interactive and display._shown:
        stream.write("\r\x1b[K")
        display._shown = ""


class _CountingWorker(luigi.worker.Worker):
    """luigi's worker, telling the display of each task it schedules to run (status PENDING)."""

    def _add_task(self, *args: Any, **kwargs: Any) -> None:
        super()._add_task(*args, **kwargs)
        display = _current["display"]
        task = self._scheduled_tasks.get(kwargs["task_id"])
        if display is not None and task is not None and kwargs["status"] == luigi.scheduler.PENDING:
            display.scheduled(task)


class WorkerFactory(luigi.interface._WorkerSchedulerFactory):
    """What ``luigi.build(worker_scheduler_factory=...)`` takes: luigi's schedulers, and a worker
    that counts the tasks it schedules for the display."""

    def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> luigi.worker.Worker:
        return _CountingWorker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)


# ---------------------------------------------------------------------- summary

def summary(worker: luigi.worker.Worker) -> str:
    """The run in a few lines: how many tasks ran, were already done, failed or could not run, by
    family, with the labels of those that failed or could not run."""
    groups = _summary_dict(worker)

    def ours(status: str) -> list[TracerflowTask]:
        return sorted((t for t in groups.get(status, ()) if isinstance(t, TracerflowTask)), key=lambda t: t.task_id)

    ran, already, failed = ours("completed"), ours("already_done"), ours("failed") + ours("scheduling_error")
    blocked = ours("upstream_failure") + ours("upstream_missing_dependency") + ours("upstream_scheduling_error")
    missing = ours("still_pending_ext")
    other = ours("run_by_other_worker") + ours("upstream_run_by_other_worker")
    total = len({t.task_id for t in ran + already + failed + blocked + missing + other
                 + ours("still_pending_not_ext") + ours("not_run")})
    if total == 0:
        return "tracerflow: nothing to run: every target is complete and made from the current config and inputs"
    head = [f"{len(ran)} ran", f"{len(already)} already done"]
    head += [f"{len(failed)} failed"] if failed else []
    head += [f"{len(blocked)} not run (an upstream task failed)"] if blocked else []
    head += [f"{len(missing)} missing an input no task makes"] if missing else []
    head += [f"{len(other)} run by another worker"] if other else []
    lines = [f"tracerflow: {total} tasks: {', '.join(head)}"]
    for name, tasks in (("ran", ran), ("already done", already)):
        if tasks:
            lines.append(f"  {name}: {_by_family(tasks)}")
    for name, tasks in (("failed", failed), ("not run", blocked), ("missing input", missing)):
        if tasks:
            shown = ", ".join(t.label() for t in tasks[:LISTED])
            lines.append(f"  {name}: {shown}" + (f" and {len(tasks) - LISTED} more" if len(tasks) > LISTED else ""))
    return "\n".join(lines)


def _by_family(tasks: list[TracerflowTask]) -> str:
    counts = Counter(t.task_family for t in tasks)
    order = sorted(counts, key=lambda family: STAGES.index(family) if family in STAGES else len(STAGES))
    return ", ".join(f"{counts[family]} {family}" for family in order)
