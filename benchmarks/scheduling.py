"""Start-up and scheduling at scale: what the command costs before and between the tasks' own work.

Two benchmarks, each through the installed command line (``.venv/bin/tracerflow``, subprocesses):

- **Start-up.** Wall time of ``tracerflow --help`` against ``python -c "import torch"`` with the same
  interpreter, best and median of 5 each, in the same run; goal: ``--help`` faster (ratio < 1).
  ``tracerflow validate`` and ``tracerflow show --until ApplySelections`` on the embedded default
  config, run in an empty temporary directory, are recorded alongside (information only).
- **Scheduling at scale.** The default analysis with its two toy samples made of N tiny input files
  in all (N = 1,000 and 10,000; one event per file, ``events_per_file=1``, half the files per
  sample), generated once per N with ``tracerflow generate`` (not timed). Then, from that state,
  ``tracerflow run --until ApplySelections --workers 1`` (BuildEvents, BuildGraphs and
  ApplySelections of every file) is timed on luigi's local scheduler and on a central scheduler
  (``tracerflow scheduler start --dir <tmp> --port <free port>``, a fresh one per run, stopped
  afterwards; ``--scheduler-url``). Before each timed run every output but the generated samples
  is removed, so each run starts from fresh outputs and the same inputs (GenerateSample is found
  complete and does not run; a run in which it does is refused).

  Each run's log (``<output_dir>/logs/<project>.log``, luigi's records with millisecond time
  stamps) gives every task's window: from luigi's ``running`` record to its ``done`` record (the
  worker's check of the task's dependencies, the task's start event, ``run()`` and its own
  completeness check). From those and the process's wall time (``Popen`` to exit):

  - *first task*: seconds from process start to the first task's ``running`` record (goal <= 10 s);
  - *idle per file*: (wall time - sum of the windows of the tasks that do work) / N, i.e. everything
    but the tasks' own work: interpreter start and imports, config, building and checking the
    DAG, the scheduler's bookkeeping between tasks, the ``Analysis`` wrapper's completeness check of
    every task at the end, shutdown (goal < 5 ms per file). The record splits it into those phases;
  - wall time, tasks scheduled (luigi's summary) and tasks run per family.

  Where the log has no task records (a changed log format), the first task falls back to the
  modification time of the first output file written (an upper bound) and the record says so.

  After the local run, with every target done, the same command is timed twice more to its
  "nothing to run" (row ``Scheduling: N files, everything done``; goal: within 10 s as well):
  without the status index (``tracerflow.io.status_index``; every target's attributes read from
  its file), then with the index that run saved.

  The config setting ``scheduler.files_per_task`` (groups files per task; an int or ``auto``) is
  recorded as the validated config has it; when the key exists, N = 1,000 is also run with
  ``--set scheduler.files_per_task=1`` on both schedulers (``--ungrouped-up-to N`` moves the limit;
  not N = 10,000: one task per file there takes too long).

Every subprocess runs with ``OMP_NUM_THREADS=1`` and its status index in
``benchmarks/work/scheduling/status-index`` (removed with the outputs). ``benchmarks/results.json`` gets a
``scheduling`` block (``startup`` and, per N, ``sizes``) and its rows (``Start-up: ...``,
``Scheduling: ...``); a run replaces what it measured and keeps the rest (``benchmarks/run.py``
measures the start-up and 1,000 files and keeps an earlier 10,000-file record). Outputs live in
``benchmarks/work/scheduling/files_N`` and are deleted after each N unless ``--keep``. The client's
CPU time (``RUSAGE_CHILDREN``) and, on the central scheduler, luigid's CPU time during the run are
recorded too: they say whether idle time is spent computing or waiting. Only the log records of
the run's own process count. Results are merged into the results file as soon as they are
measured; a second run waits for the first (a lock file), and SIGTERM ends the child run and
stops luigid before this process exits.

    .venv/bin/python benchmarks/scheduling.py                      # start-up, 1,000 and 10,000 files
    .venv/bin/python benchmarks/scheduling.py --files 100 --skip-startup   # a quick check
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "scheduling"
RESULTS = HERE / "results.json"
SIZES = (1_000, 10_000)
RUN_SIZES = (1_000,)  # what benchmarks/run.py measures; an earlier 10,000-file record is kept
UNGROUPED_MAX_FILES = 1_000  # files_per_task=1 is measured up to this size
STARTUP_REPEATS = 5
UNTIL = "ApplySelections"
FIRST_TASK_GOAL_S = 10.0
IDLE_GOAL_MS = 5.0
FILES_PER_TASK = "scheduler.files_per_task"
WRAPPER = "Analysis"
ROW_PREFIXES = ("Start-up:", "Scheduling:")
STATUS_DIR = WORK / "status-index"  # the runs' status index (tracerflow.io.status_index), not the user's
ENV = {"OMP_NUM_THREADS": "1", "TRACERFLOW_STATUS_DIR": str(STATUS_DIR)}
_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\d+) \S+ \w+: (.*)$")
_TASK = re.compile(r"\] Worker Worker\((.*?)\) (running|done|failed)\s+(\w+)\((.*)$")
_WORKER_PID = re.compile(r"\bpid=(\d+)")
_SCHEDULED = re.compile(r"Scheduled (\d+) tasks")
_INFORMED = re.compile(r"Informed scheduler that task\s+(\S+)\s+has status\s+(\w+)")
_SECTION = re.compile(r"^\* (\d+) (.+):$")
_FAMILY = re.compile(r"^\s+- (\d+) (\w+)\(")


# ----------------------------------------------------------------------------------------------
# helpers

def tracerflow_exe() -> str:
    """The installed console script beside this interpreter."""
    return str(Path(sys.executable).with_name("tracerflow"))


def environment() -> dict[str, str]:
    """The subprocesses' environment: this one with :data:`ENV` (one thread, the runs' status index)."""
    return {**os.environ, **ENV}


def sets(overrides: Iterable[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def run_child(command: Sequence[str], cwd: Path | None = None, stdout: Any = subprocess.PIPE,
              stderr: Any = subprocess.PIPE) -> tuple[int, int, str, str]:
    """Run ``command`` in a session of its own and wait; return (PID, exit code, stdout, stderr).

    If this process is interrupted or terminated meanwhile (see :func:`terminated_as_exit`), the
    child's process group is ended too, so that no run outlives the benchmark and writes into the
    next one's directories."""
    child = subprocess.Popen(list(command), cwd=cwd, env=environment(), stdout=stdout, stderr=stderr,
                             text=True, start_new_session=True)
    try:
        out, err = child.communicate()
    except BaseException:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(wait)
                break
        raise
    return child.pid, child.returncode, out or "", err or ""


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit here (in the main thread), so that cleanups run: the child's
    process group is ended and a central scheduler stopped."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_checked(command: Sequence[str], cwd: Path | None = None, log: Path | None = None) -> str:
    """Run ``command``; return its stdout; raise with the output's tail when it fails."""
    _, code, out, err = run_child(command, cwd)
    if log is not None:
        log.write_text(out + err)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}:\n{(out + err)[-4000:]}")
    return out


def wall_times(command: Sequence[str], repeats: int, cwd: Path | None = None) -> list[float]:
    """Wall time (fork to exit) of ``repeats`` runs of ``command``, output discarded."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(list(command), cwd=cwd, env=environment(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def summary_of(command: Sequence[str], seconds: list[float]) -> dict[str, Any]:
    return {"command": " ".join(command), "best_s": round(min(seconds), 3),
            "median_s": round(statistics.median(seconds), 3), "runs_s": [round(s, 3) for s in seconds]}


# ----------------------------------------------------------------------------------------------
# start-up

def bench_startup(repeats: int = STARTUP_REPEATS, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """``tracerflow --help`` against ``import torch``, interleaved; then validate and show (information)."""
    exe = tracerflow_exe()
    help_cmd, torch_cmd = [exe, "--help"], [sys.executable, "-c", "import torch"]
    wall_times(help_cmd, 1)  # warm the page cache for both before timing
    wall_times(torch_cmd, 1)
    help_s, torch_s = [], []
    for _ in range(repeats):
        help_s += wall_times(help_cmd, 1)
        torch_s += wall_times(torch_cmd, 1)
    record: dict[str, Any] = {
        "date": now(), "code": code_version(), "repeats": repeats, "omp_num_threads": ENV["OMP_NUM_THREADS"],
        "load_average": round(os.getloadavg()[0], 2),
        "help": summary_of(help_cmd, help_s), "import_torch": summary_of(torch_cmd, torch_s),
    }
    record["ratio"] = round(min(help_s) / min(torch_s), 3)
    record["ratio_median"] = round(statistics.median(help_s) / statistics.median(torch_s), 3)
    echo(f"  --help best {min(help_s):.2f} s, import torch best {min(torch_s):.2f} s, ratio {record['ratio']:.2f}")
    with tempfile.TemporaryDirectory(prefix="tracerflow-startup-") as tmp:
        for key, command in (("validate", [exe, "validate"]), ("show", [exe, "show", "--until", UNTIL])):
            seconds = wall_times(command, repeats, cwd=Path(tmp))
            record[key] = summary_of(command, seconds)
            echo(f"  {' '.join(command[1:])}: best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s")
    return record


# ----------------------------------------------------------------------------------------------
# scheduling at scale

def generated_samples() -> list[str]:
    from tracerflow.config.load import load_config

    return [name for name, spec in load_config(None)["samples"].items() if spec["generate"]]


def jets_for_events(process: str, sample: str, n_events: int, seed: int) -> int:
    """The jet count whose toy sample has exactly ``n_events`` events (every event has >= 2 jets)."""
    from tracerflow.toy import plan_files

    plans = plan_files(process, 20 * n_events, 1, seed, sample)  # one event per plan entry
    if len(plans) < n_events:
        raise RuntimeError(f"{sample}: {20 * n_events} jets gave only {len(plans)} events")
    return sum(p.n_jets for p in plans[:n_events])


def overrides_for(n_files: int, out_dir: Path) -> list[str]:
    """``--set`` overrides: the generated samples with one event per file, ``n_files`` files in all."""
    from tracerflow.config.load import load_config

    default = load_config(None)
    names = generated_samples()
    shares = {name: n_files // len(names) for name in names}
    shares[names[0]] += n_files - sum(shares.values())
    overrides = [f"project.output_dir={out_dir}"]
    for name in names:
        gen = default["samples"][name]["generate"]
        n_jets = jets_for_events(gen["process"], name, shares[name], default["project"]["seed"])
        overrides += [f"samples.{name}.generate.n_jets={n_jets}", f"samples.{name}.generate.events_per_file=1"]
    cfg = load_config(None, overrides)
    planned = sum(len(cfg.sample_files(name)) for name in names)
    if planned != n_files:
        raise RuntimeError(f"overrides plan {planned} files, not {n_files}: {overrides}")
    return overrides


def validated(overrides: Sequence[str]) -> dict[str, Any]:
    """The config as ``tracerflow validate`` prints it."""
    import yaml

    return yaml.safe_load(run_checked([tracerflow_exe(), "validate", *sets(overrides)]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def central_scheduler(directory: Path) -> Iterator[tuple[str, float, int | None]]:
    """A fresh ``tracerflow scheduler`` in ``directory`` on a free port: (its URL, seconds to start, PID)."""
    exe = tracerflow_exe()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    port = free_port()
    start = time.perf_counter()
    run_checked([exe, "scheduler", "start", "--dir", str(directory), "--port", str(port)])
    seconds = time.perf_counter() - start
    pidfile = directory / "luigid.pid"
    pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
    try:
        yield f"http://127.0.0.1:{port}", seconds, pid
    finally:
        run_checked([exe, "scheduler", "stop", "--dir", str(directory)])


def fresh_outputs(out_dir: Path, project: str) -> None:
    """Remove every output below ``out_dir`` but the generated samples (``<project>/samples``), and
    the status index of the outputs."""
    shutil.rmtree(STATUS_DIR, ignore_errors=True)
    for entry in out_dir.iterdir():
        if entry.name != project:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in (out_dir / project).iterdir():
        if entry.name != "samples":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def log_stamp(text: str) -> float:
    """A logging ``asctime`` (local time, milliseconds) as seconds since the epoch."""
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def records_of(log_text: str, pid: int | None) -> str:
    """The lines of the log records that process ``pid`` wrote (with their continuation lines), or
    of those whose luigi worker it runs (a worker that forks logs from its child); all with None."""
    kept, ours = [], False
    for line in log_text.splitlines():
        record = _RECORD.match(line)
        if record:
            task = _TASK.search(record.group(3))
            worker = _WORKER_PID.search(task.group(1)) if task else None
            ours = pid is None or int(record.group(2)) == pid or (worker is not None and int(worker.group(1)) == pid)
        if ours:
            kept.append(line)
    return "\n".join(kept)


def task_windows(log_text: str) -> tuple[float | None, list[dict[str, Any]]]:
    """The first record's time and every task's ``running``..``done`` window from a run's log."""
    first = None
    open_tasks: dict[str, tuple[str, float]] = {}
    windows = []
    for line in log_text.splitlines():
        record = _RECORD.match(line)
        if not record:
            continue
        stamp = log_stamp(record.group(1))
        first = stamp if first is None else first
        task = _TASK.search(record.group(3))
        if not task:
            continue
        _, event, family, rest = task.groups()
        key = family + "(" + rest
        if event == "running":
            open_tasks[key] = (family, stamp)
        elif key in open_tasks:
            family, began = open_tasks.pop(key)
            windows.append({"family": family, "start": began, "end": stamp, "status": event})
    return first, sorted(windows, key=lambda w: w["start"])


def luigi_summary(text: str) -> dict[str, Any]:
    """Tasks scheduled and, per section of luigi's execution summary, tasks per family."""
    scheduled = _SCHEDULED.search(text)
    sections: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        if (section := _SECTION.match(line)):
            current = sections.setdefault(section.group(2), {})
        elif current is not None and (family := _FAMILY.match(line)):
            current[family.group(2)] = current.get(family.group(2), 0) + int(family.group(1))
        elif not line.strip():
            current = None
    return {"scheduled": int(scheduled.group(1)) if scheduled else None, "sections": sections}


def first_output_mtime(output_root: Path) -> float | None:
    """The modification time of the first file a per-file stage wrote (fallback of the first task)."""
    stamps = [p.stat().st_mtime for kind in ("events", "graphs", "selections")
              for p in (output_root / kind).rglob("*") if p.is_file()]
    return min(stamps) if stamps else None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process so far (None when it cannot be read)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times() if pid is not None else None
    except psutil.Error:
        return None
    return times.user + times.system if times is not None else None


def timed_run(overrides: Sequence[str], out_dir: Path, project: str, n_files: int,
              url: str | None, scheduler_pid: int | None = None) -> dict[str, Any]:
    """One ``tracerflow run --until ApplySelections`` from fresh outputs, and what its log says."""
    fresh_outputs(out_dir, project)
    command = [tracerflow_exe(), "run", "--until", UNTIL, "--workers", "1", *sets(overrides)]
    if url is not None:
        command += ["--scheduler-url", url]
    console = out_dir / "console.txt"
    load_before = os.getloadavg()[0]
    scheduler_cpu = cpu_seconds(scheduler_pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(console, "w") as handle:
        began_epoch = time.time()
        began = time.perf_counter()
        pid, returncode, _, _ = run_child(command, out_dir, stdout=handle, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if scheduler_cpu is not None:
        scheduler_cpu = (cpu_seconds(scheduler_pid) or scheduler_cpu) - scheduler_cpu
    text = console.read_text(errors="replace")
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {returncode}:\n{text[-4000:]}")
    log = out_dir / "logs" / f"{project}.log"
    log_text = records_of(log.read_text(errors="replace"), pid)
    summary = luigi_summary(log_text)  # luigi's execution summary goes to the log whatever the terminal shows
    ran = next((families for name, families in summary["sections"].items() if "ran successfully" in name), {})
    if not ran:  # no summary in the log: count the task records
        for w in task_windows(log_text)[1]:
            ran[w["family"]] = ran.get(w["family"], 0) + 1
    if "GenerateSample" in ran:
        raise RuntimeError("GenerateSample ran: the generated inputs were not reused, the timing is void")
    ended_epoch = began_epoch + wall
    first_record, windows = task_windows(log_text)
    informed = {m.group(1) for m in _INFORMED.finditer(log_text)}
    work = [w for w in windows if w["family"] != WRAPPER]
    wrapper = sum(w["end"] - w["start"] for w in windows if w["family"] == WRAPPER)
    own = sum(w["end"] - w["start"] for w in work)
    idle = wall - own
    if idle < 0:
        raise RuntimeError(f"the task windows in {log} add up to {own:.1f} s, more than the run's {wall:.1f} s: "
                           "the timing is void (did another process run in the same directory?)")
    record: dict[str, Any] = {
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 2), "tasks_scheduled": summary["scheduled"] or len(informed), "tasks_run": ran,
        "tasks_complete_before": next((f for name, f in summary["sections"].items() if "complete" in name), {}),
        "own_s": round(own, 2), "idle_s": round(idle, 2), "idle_ms_per_file": round(1000 * idle / n_files, 2),
        "client_cpu_s": round(client_cpu, 2),
        **({"scheduler_cpu_s": round(scheduler_cpu, 2)} if scheduler_cpu is not None else {}),
    }
    if windows:
        record["first_task_s"] = round(windows[0]["start"] - began_epoch, 2)
        record["first_task_source"] = "log: first task's 'running' record"
        gaps = sum(max(0.0, b["start"] - a["end"]) for a, b in zip(windows, windows[1:]))
        record["phases_s"] = {
            "start_to_first_log_record": round(first_record - began_epoch, 2),
            "first_log_record_to_first_task": round(windows[0]["start"] - first_record, 2),
            "between_tasks": round(gaps, 2),
            "analysis_wrapper": round(wrapper, 2),
            "after_last_task": round(ended_epoch - windows[-1]["end"], 2),
        }
        per_family: dict[str, list[float]] = {}
        for w in work:
            per_family.setdefault(w["family"], []).append(w["end"] - w["start"])
        record["own_ms_per_task"] = {f: {"tasks": len(s), "median": round(1000 * statistics.median(s), 1),
                                         "mean": round(1000 * statistics.fmean(s), 1)}
                                     for f, s in per_family.items()}
        record["gap_ms_per_task"] = round(1000 * gaps / max(1, len(windows) - 1), 2)
    else:
        stamp = first_output_mtime(out_dir / project)
        record["first_task_s"] = round(stamp - began_epoch, 2) if stamp is not None else None
        record["first_task_source"] = ("fallback: modification time of the first output file (an upper bound); "
                                       "the log had no task records, so own_s is 0 and idle is the wall time")
    record["met"] = bool(record["first_task_s"] is not None and record["first_task_s"] <= FIRST_TASK_GOAL_S
                         and record["idle_ms_per_file"] < IDLE_GOAL_MS)
    return record


def rerun_record(overrides: Sequence[str], out_dir: Path, project: str, n_files: int) -> dict[str, Any]:
    """``tracerflow run --until ApplySelections`` again once every target is done (local scheduler):
    first with no status index (each target's attributes read from the file, as the first run of
    a tracerflow without the index), then with the index that run saved."""
    command = [tracerflow_exe(), "run", "--until", UNTIL, "--workers", "1", *sets(overrides)]

    def timed() -> float:
        began = time.perf_counter()
        _, code, out, err = run_child(command, out_dir)
        wall = time.perf_counter() - began
        if code != 0 or "nothing to run" not in out + err:
            raise RuntimeError(f"a run with every target done did not say 'nothing to run' (exit {code}):\n"
                               f"{(out + err)[-4000:]}")
        return wall

    indexes = list(STATUS_DIR.glob("*.json"))
    shutil.rmtree(STATUS_DIR, ignore_errors=True)
    without = timed()
    with_index = timed()
    return {"targets": 3 * n_files, "index_files": len(indexes), "without_index_s": round(without, 2),
            "with_index_s": round(with_index, 2), "load_average": round(os.getloadavg()[0], 2)}


def bench_size(n_files: int, keep: bool = False, echo: Callable[[str], None] = print,
               ungrouped_up_to: int = UNGROUPED_MAX_FILES,
               save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Generate ``n_files`` tiny files once, then time the runs through ApplySelections on both schedulers;
    ``save`` gets the record after each run (``complete`` false until the last)."""
    out_dir = WORK / f"files_{n_files}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    overrides = overrides_for(n_files, out_dir)
    config = validated(overrides)
    project = config["project"]["name"]
    has_key = FILES_PER_TASK.split(".")[1] in (config.get("scheduler") or {})
    default_value = config["scheduler"].get("files_per_task") if has_key else None
    start = time.perf_counter()
    run_checked([tracerflow_exe(), "generate", "--workers", "1", *sets(overrides)], cwd=out_dir,
                log=out_dir / "generate.txt")
    generate_s = time.perf_counter() - start
    echo(f"  {n_files:>6,} files generated in {generate_s:.0f} s")
    variants: list[tuple[str, list[str]]] = [(str(default_value) if has_key else "(key absent)", [])]
    if has_key and n_files <= ungrouped_up_to and default_value != 1:
        variants.append(("1", [f"{FILES_PER_TASK}=1"]))
    runs: list[dict[str, Any]] = []
    rerun: dict[str, Any] | None = None

    def size_record(complete: bool) -> dict[str, Any]:
        return {"date": now(), "code": code_version(), "files": n_files, "generate_seconds": round(generate_s, 1),
                "files_per_task_key": has_key, "config_overrides": overrides,
                "omp_num_threads": ENV["OMP_NUM_THREADS"], "workers": 1, "complete": complete, "runs": list(runs),
                **({"rerun": rerun} if rerun is not None else {})}

    for files_per_task, extra in variants:
        for scheduler in ("local", "central"):
            with contextlib.ExitStack() as stack:
                url, start_s, pid = None, None, None
                if scheduler == "central":
                    url, start_s, pid = stack.enter_context(central_scheduler(WORK / f"luigid_{n_files}"))
                record = timed_run([*overrides, *extra], out_dir, project, n_files, url, pid)
            record = {"scheduler": scheduler, "files_per_task": files_per_task, "config_overrides_extra": extra,
                      **({"scheduler_start_s": round(start_s, 2)} if start_s is not None else {}), **record}
            runs.append(record)
            echo(f"  {n_files:>6,} files  {scheduler:<7} files_per_task={files_per_task:<12} "
                 f"wall {record['wall_s']:7.1f} s  first task {record['first_task_s']} s  "
                 f"idle {record['idle_ms_per_file']:.1f} ms/file  tasks {record['tasks_scheduled']}")
            if scheduler == "local" and not extra:
                rerun = rerun_record(overrides, out_dir, project, n_files)
                echo(f"  {n_files:>6,} files  everything done: {rerun['without_index_s']:.1f} s without the status "
                     f"index, {rerun['with_index_s']:.1f} s with it")
            if save is not None and len(runs) < 2 * len(variants):
                save(size_record(complete=False))
    if not keep:
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(WORK / f"luigid_{n_files}", ignore_errors=True)
    return size_record(complete=True)


# ----------------------------------------------------------------------------------------------
# results

def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    """The commit measured and how many files of the package differed from it."""
    root = HERE.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "lib", "tasks", "workflows", "configs")
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "uncommitted_package_files": len(changed.splitlines()) if changed else 0}


def scheduling_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    """Rows of the start-up record and of every (size, scheduler, files_per_task) run."""
    rows = []
    startup = block.get("startup")
    if startup:
        help_, torch_ = startup["help"], startup["import_torch"]
        rows.append(row_type(
            "Start-up: tracerflow --help", 1, help_["best_s"], "s", "python -c 'import torch', same interpreter, "
            "this run (s)", torch_["best_s"], startup["ratio"], "< 1 x anchor", startup["ratio"] < 1, help_["best_s"],
            f"best of {startup['repeats']}; median {help_['median_s']:.2f} s vs {torch_['median_s']:.2f} s "
            f"(ratio {startup['ratio_median']:.2f}); measured {startup['date']}"))
        for key in ("validate", "show"):
            rec = startup[key]
            rows.append(row_type(
                f"Start-up: tracerflow {rec['command'].split(' ', 1)[1]}", 1, rec["best_s"], "s", None, None, None,
                "info", None, rec["best_s"], f"default config, empty directory; best of {startup['repeats']}, "
                f"median {rec['median_s']:.2f} s; measured {startup['date']}"))
    for key, size in sorted(block.get("sizes", {}).items(), key=lambda item: int(item[0])):
        for run in size["runs"]:
            phases = run.get("phases_s", {})
            own = ", ".join(f"{f} {v['tasks']:,} x {v['median']:.0f} ms" for f, v in run.get("own_ms_per_task", {}).items())
            scheduled = f"{run['tasks_scheduled']:,}" if run["tasks_scheduled"] is not None else "?"
            detail = (f"wall {run['wall_s']:.1f} s, first task after {run['first_task_s']} s "
                      f"({run['first_task_source']}), {scheduled} tasks scheduled; "
                      f"tasks' own {run['own_s']:.1f} s ({own}); CPU: client {run.get('client_cpu_s', '?')} s"
                      + (f", luigid {run['scheduler_cpu_s']} s" if "scheduler_cpu_s" in run else "") + "; "
                      f"idle {run['idle_s']:.1f} s = " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
                      + f"; generated in {size['generate_seconds']:.0f} s; measured {size['date']}"
                      + ("" if size.get("complete", True) else "; the size's other runs were not measured"))
            rows.append(row_type(
                f"Scheduling: {int(key):,} files, {run['scheduler']} scheduler, files_per_task={run['files_per_task']}",
                int(key), run["idle_ms_per_file"], "ms idle/file", "first task (s)", run["first_task_s"], None,
                f"< {IDLE_GOAL_MS:g} ms/file, first task <= {FIRST_TASK_GOAL_S:g} s", run["met"], run["wall_s"],
                detail))
        rerun = size.get("rerun")
        if rerun:
            rows.append(row_type(
                f"Scheduling: {int(key):,} files, everything done, local scheduler", int(key), rerun["with_index_s"],
                "s", "without the status index (s)", rerun["without_index_s"],
                round(rerun["with_index_s"] / rerun["without_index_s"], 3), f"<= {FIRST_TASK_GOAL_S:g} s",
                rerun["with_index_s"] <= FIRST_TASK_GOAL_S, rerun["with_index_s"],
                f"tracerflow run --until ApplySelections once all {rerun['targets']:,} targets are done, to "
                f"'nothing to run'; without the status index every target's attributes are read from its file "
                f"({rerun['index_files']} index files removed first); measured {size['date']}"))
    return rows


def merge_block(old: Mapping[str, Any] | None, startup: Mapping[str, Any] | None,
                measured: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``scheduling`` block with what was measured replacing earlier records of the same kind."""
    old = old or {}
    sizes = dict(old.get("sizes", {}))
    sizes.update({str(n): record for n, record in measured.items()})
    block: dict[str, Any] = {
        "goals": {"startup": "tracerflow --help / import torch < 1", "first_task_s": f"<= {FIRST_TASK_GOAL_S:g}",
                  "idle_ms_per_file": f"< {IDLE_GOAL_MS:g}"},
        "startup": startup if startup is not None else old.get("startup"),
        "sizes": sizes,
    }
    return block


def merge_results(path: Path, startup: Mapping[str, Any] | None, measured: Mapping[int, Mapping[str, Any]],
                  row_type: Callable[..., Any], earlier: Mapping[str, Any] | None = None) -> list[Any]:
    """Merge into the results file's ``scheduling`` block (or into ``earlier``, read before the file was
    rewritten) and replace its rows; return those rows."""
    from dataclasses import asdict

    import run

    payload = json.loads(path.read_text()) if path.exists() else {"machine": run.machine(), "rows": []}
    block = merge_block(earlier if earlier is not None else payload.get("scheduling"), startup, measured)
    rows = scheduling_rows(block, row_type)
    payload["scheduling"] = block
    payload["rows"] = ([r for r in payload["rows"] if not r["stage"].startswith(ROW_PREFIXES)]
                       + [asdict(r) for r in rows])
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return rows


@contextlib.contextmanager
def alone(echo: Callable[[str], None]) -> Iterator[None]:
    """Hold ``benchmarks/work/scheduling/.lock``: a second run waits for the first (both would use the
    same work directories, and two at once would time each other)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"scheduling: another run holds {WORK / '.lock'}; waiting for it to end")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bench_scheduling(sizes: Iterable[int], startup: bool = True, keep: bool = False,
                     ungrouped_up_to: int = UNGROUPED_MAX_FILES,
                     save: Callable[[dict[str, Any] | None, dict[int, dict[str, Any]]], None] | None = None,
                     ) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """The start-up record (None when left out) and ``{N: record}`` of every size; ``save(startup,
    {N: record})`` gets each as soon as it is measured (a size also after each of its runs), so that
    an interrupted run keeps what it measured."""
    echo = lambda line: print(line, flush=True)  # noqa: E731
    record = None
    measured = {}
    with terminated_as_exit(), alone(echo):
        if startup:
            echo("scheduling: start-up")
            record = bench_startup(echo=echo)
            if save is not None:
                save(record, {})
        for n_files in sizes:
            echo(f"scheduling: {n_files:,} files")
            partial = (lambda rec, n=n_files: save(None, {n: rec})) if save is not None else None
            measured[n_files] = bench_size(n_files, keep=keep, echo=echo, ungrouped_up_to=ungrouped_up_to,
                                           save=partial)
            if save is not None:
                save(None, {n_files: measured[n_files]})
    return record, measured


def main(argv: list[str] | None = None) -> int:
    """Measure, print the rows and merge them into the results file."""
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="*", default=list(SIZES),
                        help=f"input file counts to measure (default {' '.join(map(str, SIZES))}; none: start-up only)")
    parser.add_argument("--skip-startup", action="store_true", help="leave out the start-up benchmark")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/scheduling/files_N afterwards")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the results JSON to update")
    parser.add_argument("--ungrouped-up-to", type=int, default=UNGROUPED_MAX_FILES, metavar="N",
                        help=f"also run files_per_task=1 for sizes up to N files (default {UNGROUPED_MAX_FILES:,}; 0: never)")
    args = parser.parse_args(argv)
    startup, measured = bench_scheduling(args.files, startup=not args.skip_startup, keep=args.keep,
                                         ungrouped_up_to=args.ungrouped_up_to,
                                         save=lambda s, m: merge_results(args.output, s, m, run.Row))
    rows = merge_results(args.output, startup, measured, run.Row)
    print()
    run.print_table(rows)
    print(f"\nupdated {args.output}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
