"""Where a batch run keeps what it knows of each task's jobs, and reading it back.

Everything lives below the run's log directory, beside the project's outputs and never among
them (a run executed as batch jobs leaves the same outputs as a local one)::

    <output_dir>/logs/<project>/batch/
        <Family>/<key>.job.json      the task's job record (written by the submitter)
        <Family>/<key>.<job id>.log  the job's stdout and stderr (written by the batch system)
        <Family>/<key>.sh            the job file last submitted for the task
        <Family>/<key>.spec.json     what the job runs (read by :mod:`.job`)
        exits/<job id>.json          the job's exit file (written by :mod:`.job` as it ends)
        law/<config_ref>/...         the batch layer's own state (job ids per stage, to reattach)

``<key>`` names the task by what it works on: ``<sample>/<file without .root>`` for the per-file
stages (the group's first file), ``<param>_<value>`` joined by ``__`` for the others
(``fold_0``, ``split_train``, ``sample_ttbar``), ``all`` for a task without parameters.

Contract with its neighbours: :mod:`.stage` (the submitter) writes the job record of each task
it submits (:func:`add_attempt`, :func:`update_attempt`); :mod:`.job` writes the exit file;
``tracerflow show`` (:mod:`tracerflow.workflows.inspect`) and the run summary read both through
:func:`describe`. The module needs neither luigi nor the batch layer: it reads tasks by their
``task_family``, ``param_kwargs`` (significant ones) and ``cfg.output_root``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tracerflow.io.atomic import write_atomic

LAYOUT = "tracerflow.batch-job"
VERSION = 1
#: What a record's attempt says of its job: submitted and not yet seen to start, running, finished
#: with its task complete, failed (to be submitted again or not).
STATES = ("submitted", "pending", "running", "finished", "failed")


def batch_root(output_root: Path) -> Path:
    """``<output_dir>/logs/<project>/batch``: the batch run's files for the project whose outputs are
    in ``output_root`` (``<output_dir>/<project>``)."""
    return output_root.parent / "logs" / output_root.name / "batch"


def exits_dir(output_root: Path) -> Path:
    return batch_root(output_root) / "exits"


def task_key(params: dict[str, Any]) -> str:
    """The file name (without suffix, possibly with subdirectories) naming a task of these
    significant parameters (``config_ref`` left out)."""
    params = {k: v for k, v in params.items() if k != "config_ref"}
    if set(params) == {"sample", "file"}:
        file = str(params["file"])
        return f"{params['sample']}/{file[:-5] if file.endswith('.root') else file}"
    if not params:
        return "all"
    return "__".join(f"{k}_{str(v).replace('/', '_')}" for k, v in params.items())


def significant_params(task: Any) -> dict[str, Any]:
    """The task's public significant parameters but ``config_ref``, in declaration order."""
    return {name: task.param_kwargs[name] for name, param in task.get_params()
            if param.significant and _public(param) and name != "config_ref"}


def _public(param: Any) -> bool:
    visibility = getattr(param, "visibility", None)
    return visibility is None or getattr(visibility, "name", "PUBLIC") == "PUBLIC"


def task_stem(output_root: Path, family: str, params: dict[str, Any]) -> Path:
    """``<batch root>/<Family>/<key>``: the task's files are this plus a suffix."""
    return batch_root(output_root) / family / task_key(params)


def record_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".job.json")


def log_path(stem: Path, job_id: str | int) -> Path:
    return stem.with_name(f"{stem.name}.{job_id}.log")


def exit_path(output_root: Path, job_id: str | int) -> Path:
    return exits_dir(output_root) / f"{job_id}.json"


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when there is none to read (missing, half-written, not JSON)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_record(stem: Path) -> dict | None:
    record = read_json(record_path(stem))
    if record is None or record.get("layout") != LAYOUT or not isinstance(record.get("attempts"), list):
        return None
    return record


def read_exit(output_root: Path, job_id: str | int) -> dict | None:
    """The exit file job ``job_id`` wrote as it ended (None while it runs, or when it was killed)."""
    return read_json(exit_path(output_root, job_id))


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(value, indent=1) + "\n")


def new_record(system: str, label: str, task_id: str, config_ref: str, digests: list[str]) -> dict:
    return {"layout": LAYOUT, "version": VERSION, "system": system, "task": label, "task_id": task_id,
            "config_ref": config_ref, "digests": digests, "attempts": []}


def add_attempt(stem: Path, fresh: dict, job_id: str | None, log: str | None, settings: str,
                error: str | None = None) -> dict:
    """Append a submission of the task to its record (a new record when the one on disk is of
    another config or task), and write it; returns the record."""
    record = read_record(stem)
    if record is None or record.get("digests") != fresh["digests"] or record.get("task_id") != fresh["task_id"]:
        record = dict(fresh)
    now = time.time()
    record["attempts"] = [*record["attempts"], {
        "job_id": job_id, "log": log, "settings": settings, "submitted": now,
        "state": "submitted" if job_id is not None else "failed", "error": error,
        **({"noticed": now} if job_id is None else {})}]
    write_json(record_path(stem), record)
    return record


def update_attempt(stem: Path, job_id: str, **changes: Any) -> dict | None:
    """Change the attempt of ``job_id`` in the task's record (its state, exit code, error, when its
    end was noticed) and write the record; None when the record holds no such attempt."""
    record = read_record(stem)
    if record is None:
        return None
    for attempt in record["attempts"]:
        if attempt.get("job_id") == job_id:
            attempt.update(changes)
            write_json(record_path(stem), record)
            return record
    return None


def settle(output_root: Path, stem: Path, record: dict | None) -> dict | None:
    """The record with its last attempt's end taken from the job's exit file, when the job ended
    while no run watched it (the submitting run was stopped, and the next found its stage done)."""
    attempt = last_attempt(record)
    if attempt is None or attempt.get("state") in ("finished", "failed") or not attempt.get("job_id"):
        return record
    ended = read_exit(output_root, attempt["job_id"])
    if ended is None:
        return record
    code = ended.get("exit_code")
    return update_attempt(stem, attempt["job_id"], state="finished" if code == 0 else "failed", exit_code=code,
                          error=None if code == 0 else f"exit code {code}: {ended.get('error')}") or record


def last_attempt(record: dict | None) -> dict | None:
    return record["attempts"][-1] if record and record["attempts"] else None


def describe(task: Any) -> str | None:
    """``job 123 (slurm, finished), log: <path>`` for a task whose current targets were made (or
    tried) by a batch job; None when no job record matches the task's targets."""
    try:
        output_root = task.cfg.output_root
        stem = task_stem(output_root, task.task_family, significant_params(task))
        record = read_record(stem)
        digests = task.output_digests() if hasattr(task, "output_digests") else None
    except Exception:  # noqa: BLE001 (show describes what it can)
        return None
    attempt = last_attempt(record)
    if attempt is None or (digests is not None and record.get("digests") != digests):
        return None
    tries = len(record["attempts"])
    state = attempt.get("state", "submitted")
    if state not in ("finished", "failed") and attempt.get("job_id"):
        ended = read_exit(output_root, attempt["job_id"])  # it ended while no run watched it
        if ended is not None:
            state = "finished" if ended.get("exit_code") == 0 else f"failed, exit code {ended.get('exit_code')}"
    more = f", attempt {tries}" if tries > 1 else ""
    job = f"job {attempt['job_id']}" if attempt.get("job_id") else "no job (submission failed)"
    log = f"; log: {attempt['log']}" if attempt.get("log") else ""
    return f"{job} ({record.get('system', 'batch')}, {state}{more}){log}"


class JobsFailed(Exception):
    """A stage some of whose tasks failed as batch jobs for good (after ``batch.retries``
    resubmissions): each one's task, last job id, error, attempts and log."""

    def __init__(self, stage: str, failures: list[dict]) -> None:
        self.stage, self.failures = stage, failures
        lines = [f"{len(failures)} task{'s' if len(failures) != 1 else ''} failed as batch jobs:"]
        for failure in failures:
            tries = failure.get("attempts", 1)
            lines.append(f"{failure['task']}: job {failure['job_id']}, {failure['error']}"
                         + (f" ({tries} attempts)" if tries > 1 else "") + f"; log: {failure['log']}")
        super().__init__("\n".join(lines))
