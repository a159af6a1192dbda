"""luigid's task history written by a thread of its own (tracerflow.workflows._luigid)."""
from __future__ import annotations

import sqlite3
from collections import Counter

import luigi.configuration
import pytest
from luigi.scheduler import Task

from tracerflow.workflows._luigid import QueuedTaskHistory


@pytest.fixture
def history(tmp_path):
    config = luigi.configuration.get_config()
    had = config.has_option("task_history", "db_connection")
    before = config.get("task_history", "db_connection") if had else None
    config.set("task_history", "db_connection", f"sqlite:///{tmp_path / 'history.db'}")
    made = QueuedTaskHistory()
    yield made, tmp_path / "history.db"
    made.close()
    if had:
        config.set("task_history", "db_connection", before)
    else:
        config.remove_option("task_history", "db_connection")


def test_every_status_change_is_written_once_the_queue_is_closed(history):
    made, path = history
    tasks = [Task(f"BuildEvents_{i}", "PENDING", deps=(), family="BuildEvents", params={"file": f"f{i}.root"})
             for i in range(300)]
    for task in tasks:
        made.task_scheduled(task)
    for i, task in enumerate(tasks):
        made.task_started(task, "host-a")
        made.task_finished(task, successful=i % 10 != 0)
    made.close()  # what luigid does at exit: everything queued is written before it returns
    with sqlite3.connect(path) as db:
        records = db.execute("SELECT id, task_id, host FROM tasks").fetchall()
        events = Counter(row[0] for row in db.execute("SELECT event_name FROM task_events"))
        params = db.execute("SELECT COUNT(*) FROM task_parameters WHERE name = 'file'").fetchone()[0]
    assert len(records) == 300 and len({r[1] for r in records}) == 300  # one record per task, not per event
    assert {r[2] for r in records} == {"host-a"}
    assert events == {"PENDING": 300, "RUNNING": 300, "DONE": 270, "FAILED": 30}
    assert params == 300
    # luigid's own readers of the history see the records
    assert len(list(made.find_all_by_name("BuildEvents"))) == 300
