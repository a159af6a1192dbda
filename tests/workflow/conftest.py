"""A central scheduler started by ``tracerflow scheduler start`` for the workflow tests."""
from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from .helpers import tracerflow


@dataclass(frozen=True)
class Scheduler:
    """A luigid that ``tracerflow scheduler start`` runs from ``directory``."""

    url: str
    port: int
    directory: Path
    pid: int


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gone(pid: int) -> bool:
    """Whether luigid ``pid`` has exited (it is not the tests' child: its exit may leave a zombie;
    a process that took over its PID is not it)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or not any("luigid" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


def stop_by_pid(pid: int, wait_s: float = 20.0) -> None:
    """SIGTERM ``pid`` and wait for it; SIGKILL it if it is still there after ``wait_s``."""
    if gone(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while not gone(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def scheduler(tmp_path) -> Scheduler:
    """``tracerflow scheduler start`` on a free loopback port, its files in ``tmp_path/scheduler``;
    whatever luigid runs from there at the end (the test may restart it) is stopped by its PID."""
    directory, port = tmp_path / "scheduler", free_port()
    tracerflow("scheduler", "start", "--dir", str(directory), "--port", str(port), cwd=tmp_path, check=True)
    pidfile = directory / "luigid.pid"
    started = Scheduler(f"http://127.0.0.1:{port}", port, directory, int(pidfile.read_text()))
    yield started
    pids = {started.pid}
    if pidfile.exists():
        pids.add(int(pidfile.read_text()))
    for pid in pids:
        stop_by_pid(pid)
