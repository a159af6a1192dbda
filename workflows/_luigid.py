"""luigid as ``tracerflow scheduler start`` runs it: luigi's own server, with the task history
written by a thread of its own.

Run as ``python -m tracerflow.workflows._luigid`` with luigid's arguments (``--address``,
``--port``, ``--logdir``, ``--state-path``); :mod:`tracerflow.workflows.scheduler` starts it, and no other module of
tracerflow imports it (luigid's process is the only one it changes).

Why: luigid records every status change of a task (PENDING, RUNNING, DONE, FAILED) in its SQLite
history inside the request that made it, through SQLAlchemy's ORM, one transaction each. Measured
here that adds ~6 ms to each of a task's three requests (``add_task`` and ``get_work`` take ~9 ms
against ~3 ms without history), which a worker waits for between any two tasks. Here the request
only queues the event; a thread writes what has queued in one transaction, while the worker goes
on. The records are the ones luigid writes (its tables, its ``/history`` pages read them), a
fraction of a second later; events still queued when luigid stops are written before it exits.
"""
from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
from typing import Any

from luigi import db_task_history
from luigi.cmdline import luigid

logger = logging.getLogger("luigi.server")

BATCH = 500
STOP_WAIT_S = 10.0


class QueuedTaskHistory(db_task_history.DbTaskHistory):
    """luigid's :class:`~luigi.db_task_history.DbTaskHistory` with its writes moved to a thread."""

    def __init__(self) -> None:
        super().__init__()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_queued, name="task-history", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    def _add_task_event(self, task: Any, event: Any) -> None:
        self._events.put((task, event))

    def close(self) -> None:
        """Write what is queued and stop the thread (at exit)."""
        if self._writer.is_alive():
            self._events.put(None)
            self._writer.join(STOP_WAIT_S)

    def _write_queued(self) -> None:
        while True:
            batch = [self._events.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            try:
                self._write([item for item in batch if item is not None])
            except Exception:  # as luigid does when the history cannot be written: log, go on
                logger.warning("Error saving task history", exc_info=True)
            if stop:
                return

    def _write(self, batch: list[tuple[Any, Any]]) -> None:
        if not batch:
            return
        created: dict[int, tuple[Any, Any]] = {}
        with self._session() as session:
            for task, event in batch:
                record = self._record(task, session, created)
                record.events.append(event)
        for task, record in created.values():
            task.record_id = record.id

    @staticmethod
    def _record(task: Any, session: Any, created: dict[int, tuple[Any, Any]]) -> Any:
        """The history's record of ``task`` (a task_history.StoredTask): kept, or made in this batch."""
        if task.record_id is not None:
            record = session.get(db_task_history.TaskRecord, task.record_id)
            if record is None:
                raise LookupError(f"task {task.task_family} has record {task.record_id}, which the history lacks")
        elif id(task) in created:
            record = created[id(task)][1]
        else:
            record = db_task_history.TaskRecord(task_id=task._task.id, name=task.task_family, host=task.host)
            for name, value in task.parameters.items():
                record.parameters[name] = db_task_history.TaskParameter(name=name, value=value)
            session.add(record)
            created[id(task)] = (task, record)
        if task.host:
            record.host = task.host
        return record


def main(argv: list[str]) -> None:
    # luigid's scheduler makes its history from this module attribute when record_task_history is set
    db_task_history.DbTaskHistory = QueuedTaskHistory  # type: ignore[misc]
    luigid(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
