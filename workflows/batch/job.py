"""What runs inside a batch job: ``python -m tracerflow.workflows.batch.job <spec.json>``.

The job file :mod:`.stage` submits exports ``TRACERFLOW_JOB_STARTED`` (the time its first line
ran) and runs this module with the submitter's Python (jobs run in the submitter's environment).
The spec names one task: its family and parameters, the config path, the overrides and the
``config_ref`` the submitter computed, the directory the run was started in, the central
scheduler's URL (or none) and where exit files go. The job:

1. re-creates the task from the config path and overrides, in the submitter's directory, and
   refuses to run (exit 4) when their ``config_ref`` is no longer the submitted one: the config
   changed after submission;
2. refuses (exit 3) when an input of the task is incomplete: a job runs its own task only, never
   upstream work;
3. runs the task with luigi against the user's luigid (or luigi's local scheduler when the run has
   none), one worker, in this process, so that its progress and status messages reach luigid as
   in a local run and tracerflow's start/success/failure handlers run. The luigi worker's id is
   the task's (``tracerflow-job <task id>``): luigid gives a task a killed job left RUNNING back to
   the next job of the same task at once, instead of after its worker-disconnect delay;
4. writes its exit file (``<batch root>/exits/<job id>.json``: exit code, error, host and the times
   it started, ran the task and ended) as it ends, whatever the outcome but SIGKILL; the submitter
   reads it to notice the end without asking the batch system. SIGTERM (``scancel``, a wall time
   reached) fails the task with a message saying so.

Exit codes: 0 the task is complete; 1 it failed (or was terminated); 2 the config cannot be
loaded; 3 an input is incomplete; 4 the config changed since submission.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UPSTREAM, EXIT_CONFIG_CHANGED = 0, 1, 2, 3, 4
#: The environment variables naming the job in each batch system (HTCondor's are set by the job file).
JOB_ID_VARIABLES = ("SLURM_JOB_ID", "LSB_JOBID", "TRACERFLOW_JOB_ID")


class Terminated(Exception):
    """The batch system ended the job (SIGTERM: cancelled, out of wall time, preempted)."""


def job_id() -> str:
    """This job's id as the batch system names it (the process id when run by hand)."""
    for name in JOB_ID_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return f"local-{os.getpid()}"


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated("the batch system ended the job (SIGTERM: cancelled, out of wall time or preempted)")


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tracerflow.workflows.batch.job <spec.json>", file=sys.stderr)
        return EXIT_FAILED
    spec = json.loads(Path(args[0]).read_text())
    exit_file = Path(spec["exits"]) / f"{job_id()}.json"
    record: dict[str, Any] = {
        "job_id": job_id(), "task": spec["label"], "host": socket.gethostname(), "pid": os.getpid(),
        "script_started": float(os.environ.get("TRACERFLOW_JOB_STARTED") or started), "python_started": started}
    signal.signal(signal.SIGTERM, _terminate)
    code = EXIT_FAILED
    try:
        code = run(spec, record)
    except Terminated as err:
        record["error"] = str(err)
        print(f"tracerflow job: {err}", file=sys.stderr, flush=True)
    except BaseException as err:
        record.setdefault("error", f"{type(err).__name__}: {err}")
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        record.update(exit_code=code, ended=time.time())
        exit_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = exit_file.with_name(f".{exit_file.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, exit_file)
    return code


def run(spec: dict, record: dict) -> int:
    """Steps 1 to 3 of the module docstring; the exit code."""
    os.chdir(spec["cwd"])
    import luigi
    from luigi.task import flatten

    from tracerflow.config import ConfigError, load_config
    from tracerflow.tasks import STAGE_CLASSES, STAGES, TracerflowTask
    from tracerflow.tasks.base import config_ref, mark_pruned
    from tracerflow.workflows import scheduler
    from tracerflow.workflows.retcodes import install_retcodes

    config, overrides = spec["config"], tuple(spec["overrides"])
    try:
        cfg = load_config(config or None, overrides)
        ref = config_ref(config, overrides)
    except ConfigError as err:
        record["error"] = f"config error: {err}"
        print(f"tracerflow job: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if ref != spec["config_ref"]:
        record["error"] = (f"the config changed since the job was submitted (config_ref {spec['config_ref']} "
                           f"then, {ref} now)")
        print(f"tracerflow job: {record['error']}; run `tracerflow run --batch ...` again", file=sys.stderr)
        return EXIT_CONFIG_CHANGED
    family = dict(zip(STAGES, STAGE_CLASSES))[spec["family"]]
    task = family(config=config, overrides=overrides, config_ref=ref, **spec["params"])
    missing = [dep for dep in flatten(task.requires()) if not dep.complete()]
    if missing:
        names = ", ".join(dep.label() if hasattr(dep, "label") else str(dep) for dep in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        record["error"] = f"inputs not complete: {names}{more}"
        print(f"tracerflow job: {task.label()} cannot run: {record['error']}", file=sys.stderr)
        return EXIT_UPSTREAM
    mark_pruned(cfg, STAGES)  # the submitter removed every stage's stale outputs before it submitted

    @TracerflowTask.event_handler(luigi.Event.START)
    def _started(started: TracerflowTask) -> None:
        record.setdefault("task_started", time.time())

    @TracerflowTask.event_handler(luigi.Event.FAILURE)
    def _failed(failed: TracerflowTask, error: BaseException) -> None:
        lines = str(error).strip().splitlines()
        record["error"] = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")

    install_retcodes()
    settings = luigi.configuration.get_config()
    if not settings.has_section("worker"):
        settings.add_section("worker")
    settings.set("worker", "id", f"tracerflow-job {task.task_id}")
    url = spec["scheduler_url"]
    kwargs: dict[str, Any] = {"local_scheduler": True} if not url else {"scheduler_url": url}
    if url:
        scheduler.client_settings(verbose=False)
    record["luigi_started"] = time.time()
    print(f"tracerflow job: {task.label()} (job {record['job_id']} on {record['host']})", flush=True)
    result = luigi.build([task], workers=1, detailed_summary=True, log_level="INFO", **kwargs)
    record["luigi_ended"] = time.time()  # luigi has logged its summary
    if result.status in (luigi.execution_summary.LuigiStatusCode.SUCCESS,
                         luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY) and task.complete():
        return EXIT_OK
    record.setdefault("error", f"luigi: {result.status.name}")
    return EXIT_FAILED


if __name__ == "__main__":
    exit_code = main()
    # Everything is written (targets renamed into place, the exit file last): end now rather than
    # through the interpreter's teardown, so that the batch system frees the job's slot as soon as
    # the submitter, reading the exit file, submits what waited for it.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
