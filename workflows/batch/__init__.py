"""``tracerflow run --batch slurm|htcondor|lsf``: every task of the run as a batch job.

Each task instance (each file group of the per-file stages, each split, each fold) is one job;
its settings come from the validated ``batch`` block (:mod:`.settings`). The submitting run
builds the stages as law remote workflows (:mod:`.stage`), one per stage and sample, which
submit the jobs, poll them (:mod:`.status`), resubmit failed ones up to ``batch.retries`` times
and fail naming what still failed. A job (:mod:`.job`) re-creates its task from the config and
runs it with luigi against the run's luigid, so luigid shows it, its progress and its status
message as in a local run. Job records, logs and job files: :mod:`.records`.

Contract with :mod:`tracerflow.workflows.cli`: :func:`dry_run` (reads, submits nothing: what would
be submitted and with which settings), :func:`unavailable` (checked before anything is written)
and :func:`submit` (the run; after the CLI's checks of the config, the output directory and the
scheduler, with the run's log set up). law is imported by
:func:`submit` only, after ``LAW_CONFIG_FILE``, ``LAW_HOME`` and ``LAW_USE_SOFTWARE_CACHE`` point it
at a config of tracerflow's own (no user's ``law.cfg`` or ``~/.law`` leaks in): ``import law``
patches luigi, and the local path, ``--help``, ``validate`` and ``show`` never pay for it.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tracerflow.config import Config
from tracerflow.workflows.batch import records
from tracerflow.workflows.batch.settings import SYSTEMS, directives, job_settings

EXIT_OK, EXIT_FAILED, EXIT_WORK_REMAINS, EXIT_INTERRUPTED = 0, 1, 3, 130
#: The most stage-and-sample workflows that poll their jobs at once (each holds one luigi worker process).
MAX_WORKFLOWS = 32
#: What each system's jobs are submitted and watched with.
SUBMIT_COMMANDS = {"slurm": ("sbatch", "squeue"), "htcondor": ("condor_submit", "condor_q"), "lsf": ("bsub", "bjobs")}
LISTED = 5

LAW_CONFIG = """\
# law's settings for tracerflow's batch runs, written by `tracerflow run --batch`.
[core]
index_file: {home}/index
software_dir: {home}/software

[logging]
law: WARNING

[job]
job_file_dir: {home}/jobs
job_file_dir_mkdtemp: False
job_file_dir_cleanup: False
slurm_chunk_size_query: 200
htcondor_job_grouping_submit: False
htcondor_merge_job_files: False
"""


def dry_run(system: str, cfg: Config, config: str, overrides: tuple[str, ...], until: str) -> int:
    """Print every task that would be submitted, with its job settings; exit 3 when any would be
    (work remains), 0 when every target is complete. Nothing is written or submitted."""
    from tracerflow.workflows.analysis import stage_tasks

    tasks = stage_tasks(config, overrides, until)
    todo = [task for task in tasks if not task.complete()]
    if not todo:
        print(f"tracerflow: dry run: nothing to submit; all {len(tasks)} tasks are complete")
        return EXIT_OK
    print(f"tracerflow: dry run on {system}: {len(todo)} of {len(tasks)} tasks would be submitted as jobs "
          f"({len(tasks) - len(todo)} already done); logs would go to {records.batch_root(cfg.output_root)}")
    for family in dict.fromkeys(task.task_family for task in todo):
        settings = job_settings(cfg, family)
        lines = "; ".join(line.removeprefix("#SBATCH ").removeprefix("#BSUB ") for line in directives(system, settings))
        print(f"  {family}: {settings.describe()}  ({system}: {lines})")
        for task in (t for t in todo if t.task_family == family):
            print(f"    {task.label()}")
    print(f"tracerflow: dry run: {len(todo)} jobs would be submitted; nothing was submitted")
    return EXIT_WORK_REMAINS


def unavailable(system: str) -> str | None:
    """Why jobs cannot be submitted to ``system`` from here (its commands are not on PATH), or None."""
    missing = [command for command in SUBMIT_COMMANDS[system] if shutil.which(command) is None]
    if not missing:
        return None
    return (f"--batch {system} needs {' and '.join(missing)} on PATH, and found none here; "
            f"`tracerflow run --batch {system} --dry-run` lists the jobs without them")


def _point_law_at_own_config(root: Path) -> None:
    home = root / "law"
    home.mkdir(parents=True, exist_ok=True)
    path = home / "law.cfg"
    text = LAW_CONFIG.format(home=home)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    os.environ.update(LAW_HOME=str(home), LAW_CONFIG_FILE=str(path), LAW_USE_SOFTWARE_CACHE="0")


def submit(system: str, cfg: Config, config: str, overrides: tuple[str, ...], until: str, url: str | None,
           verbose: bool, log: Path | None) -> int:
    """Run every incomplete task up to ``until`` as a job on ``system``; the exit code."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown batch system {system!r}")
    root = records.batch_root(cfg.output_root)
    _point_law_at_own_config(root)
    try:
        import law  # noqa: F401 (patches luigi: imported here, on the batch path only)
    except ImportError:
        print("tracerflow: --batch needs the batch layer, law: pip install 'tracerflow[batch]' "
              "(or law==0.1.21)", file=sys.stderr)
        return EXIT_FAILED
    import luigi

    from tracerflow.io import status_index
    from tracerflow.workflows import display, reporting
    from tracerflow.workflows.analysis import stage_tasks
    from tracerflow.workflows.batch.stage import BatchAnalysis

    tasks = stage_tasks(config, overrides, until)
    started = time.time()
    settings = luigi.configuration.get_config()
    if not settings.has_section("worker"):
        settings.add_section("worker")
    # a stage whose jobs failed for good ends as done (stage.py): the next stages still run what
    # does not depend on the failures, though their inputs are not all complete
    settings.set("worker", "check_unfulfilled_deps", "false")
    wrapper = BatchAnalysis(config=config, overrides=overrides, until=until, system=system, scheduler_url=url or "")
    workers = max(1, min(len(wrapper.groups()), MAX_WORKFLOWS))
    kwargs: dict[str, Any] = {"workers": workers, "detailed_summary": True,
                              "log_level": "INFO" if verbose else "WARNING"}
    if url is None:
        kwargs["local_scheduler"] = True
    else:
        kwargs["scheduler_url"] = url
    try:
        with display.RunDisplay(sys.stderr, interval=cfg["scheduler"]["progress_interval"]) as shown:
            todo = [task for task in tasks if not task.complete()]
            for task in todo:
                shown.scheduled(task)
            result = luigi.build([wrapper], **kwargs)
    except luigi.rpc.RPCError:
        print(f"tracerflow: FAILED: the scheduler at {url} stopped answering; jobs already submitted keep running "
              f"(a new run reattaches to them), see {log}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\ntracerflow: interrupted; the jobs it submitted keep running: the same command reattaches to "
              f"them, `scancel` ends them (their ids: the *.job.json records in {root})", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        status_index.save()
    text, failed, blocked = summary(system, tasks, todo, started, root)
    print(text)
    ok = result.status in (luigi.execution_summary.LuigiStatusCode.SUCCESS,
                           luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY) and not failed and not blocked
    if ok:
        print(f"tracerflow: done; outputs in {cfg.output_root}")
        return EXIT_OK
    where = reporting.current_log()
    what = (f"{len(failed)} task{'s' if len(failed) != 1 else ''} failed as jobs" if failed
            else f"{len(blocked)} tasks not run" if blocked else f"luigi: {result.status.name}")
    print(f"tracerflow: FAILED ({what}); see the messages above" + (f" and {where}" if where else ""),
          file=sys.stderr)
    return EXIT_FAILED


def summary(system: str, tasks: list, todo: list, started: float, root: Path) -> tuple[str, list, list]:
    """The run in a few lines from the tasks' job records: what ran as jobs, was already done,
    failed (task, last job id, error, log) or was not run; and the failed and the not run tasks."""
    from tracerflow.workflows.display import _by_family

    todo_ids = {task.task_id for task in todo}
    ran, failed, blocked, submitted, again = [], [], [], 0, 0
    for task in tasks:
        stem = records.task_stem(task.cfg.output_root, task.task_family, records.significant_params(task))
        record = records.settle(task.cfg.output_root, stem, records.read_record(stem))
        if task.task_id not in todo_ids:
            continue
        attempts = [a for a in (record or {}).get("attempts", []) if a.get("submitted", 0) >= started - 1]
        submitted += len(attempts)
        again += max(0, len(attempts) - 1)
        if task.complete():
            ran.append(task)  # by a job of this run, or of an earlier one this run reattached to
        elif attempts:
            failed.append((task, attempts[-1], len(attempts)))
        else:
            blocked.append(task)
    if not todo:
        return "tracerflow: nothing to run: every target is complete and made from the current config and inputs", [], []
    head = [f"{len(ran)} ran as {system} jobs", f"{len(tasks) - len(todo)} already done"]
    head += [f"{len(failed)} failed"] if failed else []
    head += [f"{len(blocked)} not run (an upstream task failed)"] if blocked else []
    lines = [f"tracerflow: {len(tasks)} tasks: {', '.join(head)}"]
    if ran:
        lines.append(f"  ran: {_by_family(ran)}")
    for task, attempt, tries in failed:
        job = attempt.get("job_id") or "none (not submitted)"
        error = attempt.get("error") or attempt.get("state", "did not finish")
        lines.append(f"  failed: {task.label()}: job {job}, {error}" + (f" ({tries} attempts)" if tries > 1 else ""))
        if attempt.get("log"):
            lines.append(f"    log: {attempt['log']}")
    if blocked:
        shown = ", ".join(t.label() for t in blocked[:LISTED])
        lines.append(f"  not run: {shown}" + (f" and {len(blocked) - LISTED} more" if len(blocked) > LISTED else ""))
    if submitted:
        lines.append(f"  jobs: {submitted} submitted" + (f" ({again} again after a failure)" if again else "")
                     + f"; records and logs in {root}")
    return "\n".join(lines), failed, blocked


__all__ = ["EXIT_WORK_REMAINS", "SYSTEMS", "dry_run", "submit", "summary", "unavailable"]
