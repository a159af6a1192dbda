"""Batch runs on Slurm: what a job costs beyond its task, and the latency per dependency level.

Run as ``python benchmarks/batch.py`` (``benchmarks/run.py`` runs it too unless ``--skip-batch``;
earlier results are kept when it is skipped or Slurm cannot run here). It starts the single-node
Slurm of tests/cluster/single_node.py (root, Debian's packages) and a luigid (``tracerflow
scheduler start``), then runs ``tracerflow run --batch slurm --scheduler-url ...`` on a toy of two
samples of one small file each, so that every stage is one job per sample: two chains of
single-job dependency levels (GenerateSample -> BuildEvents -> BuildGraphs -> ApplySelections),
side by side on the node's two CPUs:

1. with tracerflow's settings (``batch.poll_interval`` 1 s, no sleep after submission), through
   ApplySelections: three level transitions per chain;
2. with law's default timing (``TRACERFLOW_BATCH_TIMING=law-defaults``: law's one-minute poll
   interval, and as long a sleep after each submission), through BuildEvents: one transition
   per chain, as each costs about a minute.

From the tasks' job records (submitted; end noticed) and the jobs' exit files (job script
started, task started, ended), per job: submission to start, start to task running (Python,
tracerflow and the luigid handshake), end to noticed; per level transition: the end of a
level's job to the start of the next level's job of the same chain, and to its task running.
Results go to the ``batch`` block and the ``Batch (Slurm):`` rows of benchmarks/results.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "batch"
RESULTS = HERE / "results.json"
ROW_PREFIX = "Batch (Slurm):"
LEVEL_GOAL_S = 2.0
TOY = ("samples.ttbar.generate.n_jets=1000", "samples.zprime.generate.n_jets=1000",
       "samples.ttbar.generate.events_per_file=100000", "samples.zprime.generate.events_per_file=100000")
CHAIN = ("GenerateSample", "BuildEvents", "BuildGraphs", "ApplySelections")
RUNS = {"tracerflow": ({}, "ApplySelections"), "law_defaults": ({"TRACERFLOW_BATCH_TIMING": "law-defaults"},
                                                                  "BuildEvents")}
TRACERFLOW = str(Path(sys.executable).with_name("tracerflow"))

sys.path.insert(0, str(HERE.parent))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3)} if values else {"n": 0}


def _measure_run(name: str, env: dict[str, str], until: str, url: str, echo: Callable[[str], None]) -> dict:
    """One batch run in a fresh directory; its jobs' and level transitions' times."""
    from tracerflow.workflows.analysis import stage_tasks
    from tracerflow.workflows.batch import records

    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args = [arg for override in TOY for arg in ("--set", override)]
    began = time.time()
    proc = subprocess.run([TRACERFLOW, "run", *args, "--until", until, "--batch", "slurm", "--scheduler-url", url],
                          cwd=work, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.time() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: tracerflow run --batch slurm exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    root = work / "tracerflow-output" / "toy-ftag"  # the toy's output_dir is relative to where the run ran
    jobs = []
    for task in stage_tasks("", TOY, until):
        stem = records.task_stem(root, task.task_family, records.significant_params(task))
        attempt = records.read_record(stem)["attempts"][-1]
        ended = records.read_exit(root, attempt["job_id"])
        jobs.append({"task": task.label(), "family": task.task_family, "sample": task.param_kwargs.get("sample"),
                     "job_id": attempt["job_id"], "submitted": attempt["submitted"],
                     "started": ended["script_started"], "task_started": ended.get("task_started"),
                     "ended": ended["ended"], "noticed": attempt.get("noticed")})
    transitions = []
    for sample in sorted({j["sample"] for j in jobs}):
        chain = {j["family"]: j for j in jobs if j["sample"] == sample}
        for before, after in zip(CHAIN, CHAIN[1:]):
            if before in chain and after in chain:
                a, b = chain[before], chain[after]
                transitions.append({"sample": sample, "from": before, "to": after,
                                    "to_job_start_s": round(b["started"] - a["ended"], 3),
                                    "to_task_start_s": round(b["task_started"] - a["ended"], 3)})
    record = {
        "until": until, "wall_s": round(wall, 1), "jobs": len(jobs), "env": env,
        "submission_to_start": _stats([j["started"] - j["submitted"] for j in jobs]),
        "start_to_task": _stats([j["task_started"] - j["started"] for j in jobs if j["task_started"]]),
        "end_to_noticed": _stats([j["noticed"] - j["ended"] for j in jobs if j["noticed"]]),
        "level_to_job_start": _stats([t["to_job_start_s"] for t in transitions]),
        "level_to_task_start": _stats([t["to_task_start_s"] for t in transitions]),
        "transitions": transitions,
    }
    echo(f"batch: {name}: {len(jobs)} jobs in {wall:.1f} s; level -> next job start median "
         f"{record['level_to_job_start'].get('median_s')} s, -> its task {record['level_to_task_start'].get('median_s')} s")
    return record


def bench_batch(echo: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The ``batch`` block, or None (with a line saying why) when Slurm cannot run here."""
    from tests.cluster.single_node import Broken, Unavailable, single_node

    WORK.mkdir(parents=True, exist_ok=True)
    env_status = {"TRACERFLOW_STATUS_DIR": str(WORK / "status-index"), "OMP_NUM_THREADS": "1"}
    os.environ.update(env_status)
    try:
        with single_node() as slurm:
            runs = {}
            for name, (env, until) in RUNS.items():
                # a luigid of its own per run: both runs' tasks have the same ids (same config)
                luigid, port = WORK / f"luigid-{name}", _free_port()
                shutil.rmtree(luigid, ignore_errors=True)
                subprocess.run([TRACERFLOW, "scheduler", "start", "--dir", str(luigid), "--port", str(port)],
                               check=True, capture_output=True, cwd=WORK)
                try:
                    runs[name] = _measure_run(name, env, until, f"http://127.0.0.1:{port}", echo)
                finally:
                    subprocess.run([TRACERFLOW, "scheduler", "stop", "--dir", str(luigid)], capture_output=True,
                                   cwd=WORK)
            cpus = slurm.run("sinfo", "-h", "-o", "%c").stdout.strip()
            version = slurm.version
    except (Unavailable, Broken) as why:
        echo(f"batch: not measured: {str(why).splitlines()[0]}")
        return None
    from importlib import metadata

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "slurm": version,
            "node_cpus": cpus, "law": metadata.version("law"), "toy": list(TOY), "runs": runs}


def batch_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    ours, theirs = block["runs"]["tracerflow"], block["runs"]["law_defaults"]
    level, anchor = ours["level_to_job_start"]["median_s"], theirs["level_to_job_start"]["median_s"]
    when = f"measured {block['date']} ({block['slurm']}, {block['node_cpus']} CPUs, law {block['law']})"
    rows = [row_type(
        f"{ROW_PREFIX} latency per dependency level, tracerflow settings", ours["level_to_job_start"]["n"], level,
        "s/level", "law's default timing (s/level)", anchor, round(level / anchor, 3), f"<= {LEVEL_GOAL_S:g} s",
        level <= LEVEL_GOAL_S, ours["wall_s"],
        f"end of a level's job to the start of the next level's job (same sample), median of "
        f"{ours['level_to_job_start']['n']} (max {ours['level_to_job_start']['max_s']} s); to the next task running "
        f"{ours['level_to_task_start']['median_s']} s (max {ours['level_to_task_start']['max_s']}); law defaults: "
        f"{anchor} s to the job start, {theirs['level_to_task_start']['median_s']} s to the task; "
        f"{ours['jobs']} jobs through {ours['until']} in {ours['wall_s']} s vs {theirs['jobs']} through "
        f"{theirs['until']} in {theirs['wall_s']} s with law's defaults; {when}")]
    for key, what in (("submission_to_start", "job submission to start"), ("start_to_task", "job start to task running"),
                      ("end_to_noticed", "job end to noticed")):
        mine, law = ours[key], theirs[key]
        rows.append(row_type(
            f"{ROW_PREFIX} {what}", mine["n"], mine["median_s"], "s/job", "law's default timing (s/job)",
            law.get("median_s"), None, "info", None, None,
            f"median of {mine['n']} jobs (min {mine['min_s']}, max {mine['max_s']} s); law defaults: median "
            f"{law.get('median_s')} s (max {law.get('max_s')} s); {when}"))
    return rows


def merge_results(path: Path, measured: Mapping[str, Any] | None, row_type: Callable[..., Any],
                  earlier: Mapping[str, Any] | None = None) -> list[Any]:
    """Put the ``batch`` block (``measured``, else the earlier one) and its rows into the results file."""
    import run

    return run.merge_block(path, "batch", measured or earlier, lambda block: batch_rows(block, row_type), (ROW_PREFIX,))


def main(argv: list[str] | None = None) -> int:
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    previous = json.loads(args.output.read_text()).get("batch") if args.output.exists() else None
    rows = merge_results(args.output, bench_batch(), run.Row, earlier=previous)
    for row in rows:
        print(f"{row.stage}: {row.throughput} {row.unit} (goal {row.goal}: {row.met}); {row.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
