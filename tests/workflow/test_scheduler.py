"""``tracerflow scheduler start|stop|status`` and ``tracerflow run`` against a central scheduler,
with real luigid processes on loopback ports."""
from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from tracerflow.config import load_config

from .conftest import gone
from .helpers import SMALL, tracerflow

CONFIG = load_config(None, SMALL[1::2])
N_FILES = sum(len(CONFIG.sample_files(s)) for s in ("ttbar", "zprime"))


def _done(url: str) -> Counter:
    """The families of the tasks the scheduler at ``url`` holds as DONE, counted."""
    query = urllib.parse.quote(json.dumps({"status": "DONE", "upstream_status": "", "search": ""}))
    with urllib.request.urlopen(f"{url}/api/task_list?data={query}", timeout=10) as resp:
        return Counter(task["name"] for task in json.load(resp)["response"].values())


def test_start_status_stop_round_trip_keeps_the_state_file(scheduler, tmp_path):
    where = ("--dir", str(scheduler.directory))
    status = tracerflow("scheduler", "status", *where, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"scheduler running at {scheduler.url} (PID {scheduler.pid})" in status.stdout
    assert f"directory: {scheduler.directory}" in status.stdout
    assert "0 running, 0 pending, 0 failed, 0 disabled, 0 done" in status.stdout
    config = (scheduler.directory / "luigi.cfg").read_text()
    assert "record_task_history = True" in config
    assert f"db_connection = sqlite:///{scheduler.directory / 'history.db'}" in config

    again = tracerflow("scheduler", "start", *where, "--port", str(scheduler.port), cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        f"tracerflow: a scheduler already runs from {scheduler.directory}, at {scheduler.url} (PID {scheduler.pid}); "
        f"stop it with: tracerflow scheduler stop --dir {scheduler.directory}"]

    stop = tracerflow("scheduler", "stop", *where, cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    state = scheduler.directory / "state.pickle"
    assert f"(PID {scheduler.pid}) stopped; state in {state}" in stop.stdout
    assert gone(scheduler.pid) and state.stat().st_size > 0
    assert not (scheduler.directory / "luigid.pid").exists()
    after = tracerflow("scheduler", "status", *where, cwd=tmp_path)
    assert after.returncode == 1
    assert after.stdout.splitlines() == [
        f"tracerflow: no scheduler runs from {scheduler.directory} (its state is kept in {state})"]


def test_start_refuses_a_port_another_program_listens_on(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = tracerflow("scheduler", "start", "--dir", str(tmp_path / "s"), "--port", str(port), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"tracerflow: port {port} on 127.0.0.1 is taken (another program listens there); choose another with --port"]
    assert not (tmp_path / "s" / "luigid.pid").exists()


def test_run_without_a_scheduler_fails_within_seconds_in_one_line(tmp_path, unused_port):
    """Before, ``--central`` with no luigid took 65 s and ended in tracebacks. The run now checks
    first; its time is compared with ``tracerflow validate``'s (the same imports and config), since
    importing the stages alone takes seconds on a busy machine."""
    url = f"http://127.0.0.1:{unused_port}"
    began = time.monotonic()
    tracerflow("validate", *SMALL, cwd=tmp_path, check=True)
    startup = time.monotonic() - began
    began = time.monotonic()
    proc = tracerflow("run", *SMALL, "--until", "BuildEvents", "--scheduler-url", url, cwd=tmp_path)
    took = time.monotonic() - began
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"tracerflow: no scheduler answers at {url}; start one with: tracerflow scheduler start --port {unused_port}"]
    assert proc.stdout == ""
    assert took < startup + 5, f"took {took:.1f} s, tracerflow validate {startup:.1f} s"
    assert not (tmp_path / "tracerflow-output").exists()


@pytest.mark.slow
def test_run_through_the_started_scheduler_is_in_its_api_history_and_state(scheduler, tmp_path):
    proc = tracerflow("run", *SMALL, "--until", "BuildEvents", "--scheduler-url", scheduler.url, cwd=tmp_path,
                      check=True)
    assert "tracerflow: done" in proc.stdout
    done = _done(scheduler.url)
    assert done["BuildEvents"] == N_FILES and done["GenerateSample"] == 2

    history = _history(scheduler.directory / "history.db", until=lambda h: h[("BuildEvents", "DONE")] >= N_FILES)
    assert history[("BuildEvents", "DONE")] == N_FILES and history[("BuildEvents", "RUNNING")] == N_FILES
    assert history[("GenerateSample", "DONE")] == 2
    with urllib.request.urlopen(f"{scheduler.url}/history", timeout=10) as resp:
        page = resp.read().decode()
    assert "BuildEvents" in page and "GenerateSample" in page

    where = ("--dir", str(scheduler.directory))
    tracerflow("scheduler", "stop", *where, cwd=tmp_path, check=True)
    assert gone(scheduler.pid)
    restarted = tracerflow("scheduler", "start", *where, "--port", str(scheduler.port), cwd=tmp_path, check=True)
    assert f"scheduler running at {scheduler.url}" in restarted.stdout
    assert _done(scheduler.url) == done


def _history(db_path, until, wait_s=10.0):
    """(task family, event) counts of luigid's task history, once ``until(counts)`` holds (its
    thread writes the events a moment after the requests that made them) or after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        with sqlite3.connect(db_path) as db:
            events = db.execute("SELECT t.name, e.event_name FROM tasks t JOIN task_events e ON e.task_id = t.id").fetchall()
        history = Counter(events)
        if until(history) or time.monotonic() > deadline:
            return history
        time.sleep(0.1)
