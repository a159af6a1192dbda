"""``tracerflow scheduler start|stop|status``: a central luigi scheduler (luigid) run by
tracerflow, and the check ``tracerflow run`` makes before it uses a central scheduler.

Contract:

* ``start`` runs luigid in a session of its own, detached from the terminal, listening on
  ``--host``/``--port`` (default ``scheduler.host`` and ``scheduler.port``: 127.0.0.1 and luigid's
  usual 8082), and returns once its API answers. All it keeps is in one directory (``--dir``,
  default ``scheduler.dir``: ``~/.tracerflow/scheduler``):

  - ``luigi.cfg``, what luigid reads (through ``LUIGI_CONFIG_PATH``): each start sets
    ``[scheduler] record_task_history`` and ``[task_history] db_connection`` and keeps every
    other key written there (``[scheduler] remove_delay``, ...);
  - ``state.pickle``: luigid's tasks, written when it stops and read when it starts again;
  - ``history.db``: the task history (SQLite, luigid's ``/history`` pages; needs SQLAlchemy < 2),
    written by a thread of luigid's own a moment after each status change (see
    :mod:`tracerflow.workflows._luigid`: luigid itself writes it inside each request);
  - ``luigid.pid`` (while it runs), ``scheduler.json`` (where it listens), ``logs/`` (luigid's
    ``luigi-server.log`` and its output, ``luigid.out``).

  It refuses, starting nothing, when a scheduler already runs from that directory, when the port
  is taken, or when SQLAlchemy is missing or 2.x. luigid runs in the foreground of a session of
  its own rather than with its ``--background`` (which needs python-daemon, and whose start
  failures nobody sees): tracerflow writes the PID file and reports an early exit with luigid's
  last line of output.
* ``status`` says where the scheduler listens, its PID, its directory and what it runs (tasks by
  status, workers); it exits 1 when none runs from the directory.
* ``stop`` sends luigid SIGTERM, on which it writes ``state.pickle`` and exits, and waits for that.
* :func:`check` is what ``tracerflow run`` does before it schedules anything on a central
  scheduler: one request, 3 s at most, and a :class:`SchedulerError` naming the URL and how to
  start one. :func:`client_settings` keeps luigi's own retries of a scheduler lost later to
  seconds.

Errors are :class:`SchedulerError`, one line each; :func:`command` prints them and returns 1.
"""
from __future__ import annotations

import argparse
import configparser
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import luigi.configuration
import luigi.parameter
import psutil

from tracerflow.config.schema import BLOCKS

CHECK_TIMEOUT_S = 3.0
START_WAIT_S = 30.0
STOP_WAIT_S = 20.0
# luigi's [core] settings for a run against a central scheduler, where the user's luigi config does
# not set them: luigi's own (10 s timeout, 3 attempts 30 s apart) stretch a lost scheduler to a minute.
RPC_SETTINGS = {"rpc_connect_timeout": "5", "rpc_retry_attempts": "3", "rpc_retry_wait": "2"}
STATUSES = ("RUNNING", "PENDING", "FAILED", "DISABLED", "DONE")
class SchedulerError(Exception):
    """A scheduler that cannot be started, reached or stopped; the message is one line."""


@dataclass(frozen=True)
class Files:
    """What a scheduler keeps in its directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "luigi.cfg"

    @property
    def state(self) -> Path:
        return self.root / "state.pickle"

    @property
    def history(self) -> Path:
        return self.root / "history.db"

    @property
    def pidfile(self) -> Path:
        return self.root / "luigid.pid"

    @property
    def info(self) -> Path:
        return self.root / "scheduler.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def output(self) -> Path:
        return self.logs / "luigid.out"


@dataclass(frozen=True)
class Running:
    """A scheduler started from ``files.root``."""

    url: str
    pid: int
    files: Files


def address(host: str, port: int) -> str:
    """``http://host:port`` (an IPv6 address in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def files_in(directory: str | os.PathLike) -> Files:
    """The files of the scheduler kept in ``directory`` (``~`` expanded, made absolute)."""
    return Files(Path(directory).expanduser().resolve())


def start(files: Files, host: str, port: int) -> Running:
    """Start luigid on ``host:port`` keeping its state in ``files.root``; return once it answers."""
    already = running(files)
    if already is not None:
        raise SchedulerError(f"a scheduler already runs from {files.root}, at {already.url} (PID {already.pid}); "
                             f"stop it with: tracerflow scheduler stop --dir {files.root}")
    _check_history_support()
    url = address(host, port)
    _check_port(host, port, url)
    try:
        files.logs.mkdir(parents=True, exist_ok=True)
        _write_config(files)
        files.pidfile.unlink(missing_ok=True)
        log = files.output.open("ab")
    except OSError as err:
        raise SchedulerError(f"cannot keep a scheduler's files in {files.root}: {err.strerror or err}") from err
    with log:
        log.write(f"--- {_now()} tracerflow scheduler start: {url}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [*_luigid_command(), "--address", host, "--port", str(port), "--logdir", str(files.logs),
             "--state-path", str(files.state)],
            cwd=files.root, env={**os.environ, "LUIGI_CONFIG_PATH": str(files.config)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    files.pidfile.write_text(f"{proc.pid}\n")
    files.info.write_text(json.dumps({"url": url, "host": host, "port": port, "pid": proc.pid,
                                      "started": _now()}, indent=1) + "\n")
    deadline = time.monotonic() + START_WAIT_S
    while not _answers(url, timeout=1.0):
        code = proc.poll()
        if code is not None:
            files.pidfile.unlink(missing_ok=True)
            raise SchedulerError(f"luigid exited (code {code}) before answering at {url}: "
                                 f"{_last_line(files.output)} (its output: {files.output})")
        if time.monotonic() > deadline:
            proc.terminate()
            proc.wait(timeout=STOP_WAIT_S)
            files.pidfile.unlink(missing_ok=True)
            raise SchedulerError(f"luigid did not answer at {url} within {START_WAIT_S:.0f} s and was stopped "
                                 f"(its output: {files.output})")
        time.sleep(0.2)
    return Running(url, proc.pid, files)


def running(files: Files) -> Running | None:
    """The scheduler running from ``files.root``, if any (a stale PID file is ignored)."""
    try:
        pid = int(files.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _is_luigid(pid):
        return None
    try:
        url = json.loads(files.info.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        url = "(unknown address)"
    return Running(url, pid, files)


def stop(files: Files) -> Running | None:
    """Stop the scheduler running from ``files.root`` (SIGTERM: luigid writes its state file and
    exits); None when none runs."""
    run = running(files)
    if run is None:
        files.pidfile.unlink(missing_ok=True)
        return None
    try:
        os.kill(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as err:
        raise SchedulerError(f"cannot stop luigid (PID {run.pid}): {err.strerror}") from err
    deadline = time.monotonic() + STOP_WAIT_S
    while _is_luigid(run.pid):
        if time.monotonic() > deadline:
            raise SchedulerError(f"luigid (PID {run.pid}) did not stop within {STOP_WAIT_S:.0f} s and still runs; "
                                 f"`kill -9 {run.pid}` ends it without saving its state")
        time.sleep(0.1)
    files.pidfile.unlink(missing_ok=True)
    return run


def summary(run: Running) -> str:
    """What the scheduler ``run`` runs, from its API: tasks by status and the workers."""
    counts, names = {}, Counter()
    for status in STATUSES:
        tasks = _api(run.url, "task_list", {"status": status, "upstream_status": "", "search": ""})
        counts[status] = tasks["num_tasks"] if "num_tasks" in tasks else len(tasks)
        if status == "RUNNING" and "num_tasks" not in tasks:
            names = Counter(task["name"] for task in tasks.values())
    workers = _api(run.url, "worker_list", {})
    text = ", ".join(f"{counts[s]} {s.lower()}" for s in STATUSES)
    if counts["RUNNING"] and names:
        text += " (running: " + ", ".join(f"{name} x{n}" for name, n in sorted(names.items())) + ")"
    active = sum(1 for w in workers if w.get("state", "active") == "active")
    return f"tasks: {text}; {active} worker{'s' if active != 1 else ''}"


def check(url: str) -> None:
    """Raise :class:`SchedulerError` unless a luigi scheduler answers at ``url`` within 3 s."""
    base = url.rstrip("/")
    try:
        _api(base, "is_paused", {}, timeout=CHECK_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        raise SchedulerError(f"{base} answers, but not as a luigi scheduler (HTTP {err.code})") from err
    except ValueError as err:
        raise SchedulerError(f"{base} answers, but not as a luigi scheduler (no JSON response)") from err
    except OSError as err:
        parts = urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = "" if parts.hostname == "127.0.0.1" else f" --host {parts.hostname}"
        raise SchedulerError(f"no scheduler answers at {base}; start one with: "
                             f"tracerflow scheduler start{host} --port {port}") from err


def client_settings(verbose: bool) -> None:
    """Set luigi's ``[core]`` RPC timeout and retries (:data:`RPC_SETTINGS`) that the loaded luigi
    config leaves unset, so a scheduler lost during a run fails it within seconds; without
    ``verbose``, luigi does not log each retry (a line and an empty traceback each)."""
    config = luigi.configuration.get_config()
    if not config.has_section("core"):
        config.add_section("core")
    settings = {**RPC_SETTINGS, **({} if verbose else {"rpc_log_retries": "false"})}
    for key, value in settings.items():
        if not config.has_option("core", key):
            config.set("core", key, value)
    # luigi's RemoteScheduler reads these keys, yet its [core] parameters do not list them.
    warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning,
                            message=r".*'rpc_\w+' .* not consumed by the task 'core'")


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """``tracerflow scheduler start|stop|status`` with their options."""
    fields = BLOCKS.fields["scheduler"].fields
    default_dir, host, port = fields["dir"].default, fields["host"].default, fields["port"].default
    parser = sub.add_parser(
        "scheduler", help="start, stop or ask about a central scheduler (luigid) run by tracerflow",
        description=f"A central luigi scheduler (luigid) for `tracerflow run --scheduler-url URL`. It keeps its "
                    f"state (state.pickle), task history (history.db, SQLite) and logs in --dir (default: "
                    f"scheduler.dir, {default_dir}).")
    actions = parser.add_subparsers(dest="action", required=True)
    texts = {"start": f"start luigid in the background (default: {address(host, port)}) and wait until it answers",
             "status": "where the scheduler listens, its PID and what it runs (exit 1: none runs)",
             "stop": "stop the scheduler; it saves its state first"}
    for name, text in texts.items():
        action = actions.add_parser(name, help=text, description=text)
        common(action)
        action.add_argument("--dir", default=None,
                            help=f"the scheduler's state, task history and logs (default: scheduler.dir, {default_dir})")
        if name != "stop":
            action.add_argument("--host", default=None, help=f"address it listens on (default: scheduler.host, {host})")
            action.add_argument("--port", type=port_arg, default=None, help=f"its port (default: scheduler.port, {port})")


def command(args: argparse.Namespace, cfg: Any) -> int:
    """Run ``tracerflow scheduler <action>``; returns the exit code."""
    block = cfg["scheduler"]
    files = files_in(args.dir or block["dir"])
    host = getattr(args, "host", None) or block["host"]
    port = getattr(args, "port", None) or block["port"]
    try:
        if args.action == "start":
            run = start(files, host, port)
            print(f"tracerflow: scheduler running at {run.url} (PID {run.pid}); state, history and logs in "
                  f"{files.root}\n    use it: tracerflow run --scheduler-url {run.url}\n"
                  f"    stop it: tracerflow scheduler stop --dir {files.root}")
            return 0
        if args.action == "stop":
            run = stop(files)
            if run is None:
                print(f"tracerflow: no scheduler runs from {files.root}; nothing to stop")
                return 0
            kept = f"state in {files.state}" if files.state.exists() else "no state file was written"
            print(f"tracerflow: scheduler at {run.url} (PID {run.pid}) stopped; {kept}, task history in "
                  f"{files.history}")
            return 0
        return _status(files, address(host, port))
    except SchedulerError as err:
        print(f"tracerflow: {err}", file=sys.stderr)
        return 1


def _status(files: Files, url: str) -> int:
    run = running(files)
    if run is None:
        line = f"tracerflow: no scheduler runs from {files.root}"
        if files.state.exists():
            line += f" (its state is kept in {files.state})"
        if _answers(url, timeout=1.0):
            line += f"; a luigi scheduler not started from there answers at {url}"
        print(line)
        return 1
    try:
        what = summary(run)
    except (OSError, ValueError) as err:
        print(f"tracerflow: luigid (PID {run.pid}, from {files.root}) does not answer at {run.url}: {err}",
              file=sys.stderr)
        return 1
    print(f"tracerflow: scheduler running at {run.url} (PID {run.pid})\n    directory: {files.root}\n    {what}\n"
          f"    history: {run.url}/history")
    return 0


def _api(url: str, method: str, data: dict, timeout: float = CHECK_TIMEOUT_S) -> Any:
    """The ``response`` of one call of luigid's API (``OSError``: unreachable; ``ValueError``: not
    luigid's answer)."""
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"{url.rstrip('/')}/api/{method}?{query}", timeout=timeout) as resp:
        body = json.load(resp)
    if not isinstance(body, dict) or "response" not in body:
        raise ValueError(f"{url} gave no luigi response to {method}")
    return body["response"]


def _answers(url: str, timeout: float) -> bool:
    try:
        _api(url, "is_paused", {}, timeout=timeout)
    except (OSError, ValueError):
        return False
    return True


def _is_luigid(pid: int) -> bool:
    """Whether ``pid`` is a live luigid (not a process that reused the PID, nor a zombie)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and any("luigid" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _check_history_support() -> None:
    try:
        version = metadata.version("sqlalchemy")
    except metadata.PackageNotFoundError:
        version = None
    if version is None or int(version.split(".")[0]) >= 2:
        found = "it is not installed" if version is None else f"found {version}"
        raise SchedulerError(f"luigid's task history needs SQLAlchemy 1.4 ({found}): pip install 'sqlalchemy>=1.4,<2'")


def _check_port(host: str, port: int, url: str) -> None:
    """Refuse a port something already listens on (bound as luigid binds it, SO_REUSEADDR)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SchedulerError(f"cannot listen on {host!r}: {err.strerror}") from err
    for family, kind, proto, _, where in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(where)
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise SchedulerError(f"cannot listen on {host} port {port}: {err.strerror}") from err
                what = "a luigi scheduler" if _answers(url, timeout=1.0) else "another program"
                raise SchedulerError(f"port {port} on {host} is taken ({what} listens there); "
                                     f"choose another with --port") from err


def _write_config(files: Files) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    if files.config.exists():
        try:
            parser.read(files.config)
        except configparser.Error as err:
            raise SchedulerError(f"{files.config} is not a luigi config: {err.message.splitlines()[0]}") from err
    for section, key, value in (("scheduler", "record_task_history", "True"),
                                ("task_history", "db_connection", f"sqlite:///{files.history}")):
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
    with files.config.open("w") as out:
        out.write("# luigid's settings for the scheduler kept in this directory. `tracerflow scheduler start`\n"
                  "# sets record_task_history and db_connection at each start and keeps any other key.\n")
        parser.write(out)


def _luigid_command() -> list[str]:
    """luigid through this Python, with its task history written by a thread of its own
    (:mod:`tracerflow.workflows._luigid`)."""
    return [sys.executable, "-m", "tracerflow.workflows._luigid"]


def port_arg(text: str) -> int:
    """An argparse type: a TCP port (1 to 65535)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1 to 65535), got {text!r}")
    return port


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
