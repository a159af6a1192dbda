"""tracerflow's stages as law remote workflows: one job per task, submitted and watched by law.

``<System>Jobs(family, group, depth)`` (``SlurmJobs``, ``HTCondorJobs``, ``LSFJobs``) is a law
remote workflow whose branches are the task instances of one stage (``family``) for one sample
(``group``; ``""`` for the stages without a sample: splits, folds, Predict), from the stage
class's own enumeration (:meth:`TracerflowTask.instances`); ``depth`` separates the tasks that
wait for others of their own stage (:func:`depth_of`). One branch is one job. The workflow
runs in the submitting ``tracerflow run --batch`` only; what runs in a job is
:mod:`tracerflow.workflows.batch.job`, never law.

What tracerflow sets or replaces in law (law 0.1.21; its signatures are relied on, so it is pinned):

* ``workflow_requires``: the workflows of the stages and samples the branches' tasks require
  (a sample's BuildGraphs waits for that sample's BuildEvents only; Resample for every
  sample's ApplySelections and BuildGraphs). ``workflow_complete``/branch ``complete``: the real
  tasks' own checks (digest-checked targets), as in a local run;
* ``create_job_file`` (law's needs luigi's command-line parser and runs ``law run`` in the job):
  tracerflow's own job file per task (:func:`.settings.job_file`), its spec beside it
  (:mod:`.records` names the paths);
* the job manager's status query (:mod:`.status`): exit files first, then squeue without sacct;
* polling: ``poll_interval`` from ``batch.poll_interval`` (law's default is a minute), no
  post-submit sleep (law's default: one poll interval), ``retries`` from ``batch.retries``, every
  job runs to its end before a stage fails (acceptance 1, tolerance 1), a finished job counts only
  with its task complete, job data written at submission and at the end only;
* messages: the workflow's status line goes to luigid only when it changes (law sends and prints
  it at every poll), law's printed output goes to the run's log file, and each job's submission
  and state changes go to the task's job record (:mod:`.records`) and to ``tracerflow run``'s
  display (:mod:`tracerflow.tasks.progress`);
* a stage whose jobs failed for good reports :class:`.records.JobsFailed` (each failed task, its
  last job id, error and log) and ends as done: what does not depend on the failures goes on,
  as in a local run (the submitting luigi worker runs with ``check_unfulfilled_deps`` off, and a
  task whose input failed is not submitted: law's ``_can_skip_job``); the run's summary and exit
  code report the failures.

Contract with its neighbours: :mod:`tracerflow.workflows.batch` imports this module only for a
batch run, after it has pointed law at its own config (``LAW_CONFIG_FILE``); ``import law``
patches luigi, so nothing on the local path imports it.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import law
import luigi
from law.util import uncolored
from law.workflow.remote import JobData
from luigi.parameter import ParameterVisibility
from luigi.task import flatten

from tracerflow.config import Config, load_config
from tracerflow.tasks import STAGE_CLASSES, STAGES, TracerflowTask
from tracerflow.tasks.base import ConfigReference
from tracerflow.tasks.progress import publish
from tracerflow.workflows.batch import records
from tracerflow.workflows.batch.settings import job_file, job_settings
from tracerflow.workflows.batch.status import MANAGERS

#: The submitter's record of submissions, job states and law's messages: luigi's interface logger's
#: child, so that they go to the run's log file, and to the terminal with ``-v`` only.
log = logging.getLogger("luigi-interface.tracerflow-batch")
#: ``TRACERFLOW_BATCH_TIMING=law-defaults`` keeps law's own timing (a poll a minute, and as long a
#: sleep after each submission) instead of ``batch.poll_interval`` and no sleep: what the batch
#: benchmark (benchmarks/batch.py) compares tracerflow's settings with.
LAW_DEFAULT_TIMING = os.environ.get("TRACERFLOW_BATCH_TIMING") == "law-defaults"
STAGE_BY_NAME = dict(zip(STAGES, STAGE_CLASSES))
#: sbatch/condor_submit/bsub refusals are retried by law 3 times; this many seconds apart.
SUBMIT_RETRY_DELAY_S = 1


def group_of(params: dict[str, Any]) -> str:
    """The group a task belongs to: its sample, or ``""`` for a task without one."""
    return str(params.get("sample", ""))


def depth_of(task: TracerflowTask) -> int:
    """How many tasks of its own family a task waits for, one after another (WriteTrainSample's
    val and test splits need its train split's scale dict: depth 1). Tasks of one family, group
    and depth run side by side; a later depth is a workflow of its own that requires the earlier."""
    same = [dep for dep in flatten(task.requires()) if dep.task_family == task.task_family]
    return 0 if not same else 1 + max(depth_of(dep) for dep in same)


class _NoFactory:
    """law makes a job file factory per workflow and cleans its directory up at the end; the job
    files here are written by :meth:`StageJobs.job_file` instead."""

    def cleanup_dir(self, force: bool = True) -> None:
        pass


class _ToLog(io.TextIOBase):
    """What law prints (job errors, submission errors), line by line into the run's log file."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + uncolored(text)).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                log.info("%s", line)
        return len(text)


def _run_to_the_end(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorates a law workflow proxy's ``run``. Tasks whose inputs are not complete when the stage
    runs (an upstream job failed for good) are not submitted. A stage some of whose jobs failed for
    good reports them (:class:`records.JobsFailed`: task, job id, error, log) and ends without an
    error, as its other tasks are done: the next stages run what does not depend on the failures,
    as a local run does, and the run's summary and exit code say what failed."""

    @functools.wraps(run)
    def wrapper(proxy: Any) -> Any:
        task = proxy.task
        task.at_run = True
        try:
            result = run(proxy)
        except KeyboardInterrupt:
            # Ctrl-C of the submitting run: its jobs go on (the same run reattaches to them). A
            # luigi worker process ends here without a report or traceback; the run's own process
            # says what happened (tracerflow.workflows.batch.submit)
            if multiprocessing.parent_process() is None:
                raise
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        except Exception:
            failed = task.final_failures()
            if not failed:
                raise
            result = None
        failed = task.final_failures()
        if failed:
            from tracerflow.workflows import reporting

            error = records.JobsFailed(task.label(), failed)
            reporting.report_failure(task, error)
            task.publish_message(f"{len(failed)} of {len(task.branch_map)} jobs failed for good")
        return result

    return wrapper


class StageJobs(ConfigReference):
    """The stage-and-sample workflow shared by the three systems' classes (see the module docstring)."""

    family = luigi.ChoiceParameter(choices=STAGES, description="the stage whose tasks run as jobs")
    group = luigi.Parameter(default="", description="the sample whose tasks run ('': all of the stage's)")
    depth = luigi.IntParameter(default=0, description="how many tasks of the family each of these waits for "
                                                      "(see depth_of)")
    scheduler_url = luigi.Parameter(default="", significant=False, visibility=ParameterVisibility.PRIVATE,
                                    description="the central scheduler jobs report to ('': none)")

    system: str = ""
    exclude_index = True
    cache_branch_map_default = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        batch = self.cfg["batch"]
        self.retries = batch["retries"]
        if not LAW_DEFAULT_TIMING:
            self.poll_interval = batch["poll_interval"] / 60.0  # law's unit: minutes
        self.parallel_jobs = batch["parallel_jobs"] or -1
        self.tasks_per_job = 1
        self.acceptance = 1.0
        self.tolerance = 1.0
        self._reals: dict[int, TracerflowTask] = {}
        self._jobs: dict[int, tuple[str, Path, str]] = {}  # job number -> (job id, task stem, label)
        self._seen: dict[str, str] = {}  # job id -> last law status seen
        self._failures: dict[str, dict] = {}  # label -> its final failure
        self._message: str | None = None
        self._blocked: dict[int, bool] = {}
        self.at_run = False  # set as the stage starts to run (not while luigi schedules it)

    # ------------------------------------------------------------------ the stage's tasks

    @property
    def cfg(self) -> Config:
        return load_config(self.config or None, tuple(self.overrides))

    def label(self) -> str:
        return (f"{self.family} jobs" + (f" of sample {self.group}" if self.group else "")
                + (f", round {self.depth + 1}" if self.depth else ""))

    def create_branch_map(self) -> list[dict[str, Any]]:
        cls = STAGE_BY_NAME[self.family]
        chosen = []
        for params in cls.instances(self.cfg):
            if group_of(params) != self.group:
                continue
            if self.depth == depth_of(cls(config=self.config, overrides=tuple(self.overrides),
                                          config_ref=self.config_ref, **params)):
                chosen.append(params)
        return chosen

    def real(self, branch: int | None = None) -> TracerflowTask:
        """The tracerflow task of ``branch`` (this branch's by default)."""
        number = self.branch if branch is None else branch
        owner = self.as_workflow() if self.is_branch() else self
        reals = owner._reals
        if number not in reals:
            reals[number] = STAGE_BY_NAME[self.family](
                config=self.config, overrides=tuple(self.overrides), config_ref=self.config_ref,
                **self.branch_map[number])
        return reals[number]

    def output(self) -> Any:  # a branch's (the workflow's own output is law's)
        return self.real().output()

    def complete(self) -> bool:  # a branch's
        return self.real().complete()

    def blocked(self, branches: list[int]) -> bool:
        """Whether a task of ``branches`` cannot run: the stage runs, and an input of the task is
        not complete (its job failed for good)."""
        if not self.at_run:
            return False
        for branch in branches:
            if branch not in self._blocked:
                self._blocked[branch] = not all(dep.complete() for dep in flatten(self.real(branch).requires()))
        return any(self._blocked[b] for b in branches)

    def run(self) -> None:  # a branch's: branches run as jobs (:mod:`.job`), never in the submitter
        raise RuntimeError(f"{self.real().label()} runs as a batch job, not in the submitting process")

    def workflow_complete(self) -> bool:
        return all(self.real(b).complete() for b in self.branch_map)

    def sibling(self, family: str, group: str, depth: int) -> "StageJobs":
        return type(self)(family=family, group=group, depth=depth, config=self.config,
                          overrides=tuple(self.overrides), config_ref=self.config_ref,
                          scheduler_url=self.scheduler_url)

    def workflow_requires(self) -> dict[str, "StageJobs"]:
        needs: dict[str, StageJobs] = {}
        for branch in self.branch_map:
            for dep in flatten(self.real(branch).requires()):
                place = (dep.task_family, group_of(dep.param_kwargs), depth_of(dep))
                key = ":".join(map(str, place))
                if key not in needs:
                    needs[key] = self.sibling(*place)
        return needs

    def output_directory(self) -> law.LocalDirectoryTarget:
        """Where law keeps the stage's job ids: per config_ref and branch map, so that a restarted
        run of the same config and files reattaches to its jobs, and any other never does."""
        listing = json.dumps(self.branch_map, sort_keys=True, default=str)
        digest = hashlib.blake2b(listing.encode(), digest_size=4).hexdigest()
        where = (records.batch_root(self.cfg.output_root) / "law" / self.config_ref / self.family
                 / f"{self.group or 'all'}{f'-after{self.depth}' if self.depth else ''}-{digest}")
        return law.LocalDirectoryTarget(str(where))

    # ------------------------------------------------------------------ job files and submission

    def job_file(self, job_num: int, branches: list[int]) -> dict[str, Any]:
        """Write the job file (and spec) of the branch's task; what law's ``create_job_file`` returns."""
        task = self.real(branches[0])
        cfg = self.cfg
        params = records.significant_params(task)
        stem = records.task_stem(cfg.output_root, self.family, params)
        settings = job_settings(cfg, self.family)
        spec = {"family": self.family, "params": params, "label": task.label(), "config": self.config,
                "overrides": list(self.overrides), "config_ref": self.config_ref, "cwd": os.getcwd(),
                "scheduler_url": self.scheduler_url or None, "exits": str(records.exits_dir(cfg.output_root))}
        spec_path = stem.with_name(stem.name + ".spec.json")
        records.write_json(spec_path, spec)
        name = "tf-" + re.sub(r"[^\w.-]+", "-", f"{self.family}-{records.task_key(params)}")
        rendered = job_file(self.system, stem=str(stem), name=name, cwd=os.getcwd(), settings=settings,
                            command=[sys.executable, "-m", "tracerflow.workflows.batch.job", str(spec_path)])
        for path, text in rendered.files.items():
            Path(path).write_text(text)
            if path.endswith(".sh"):
                os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP)
        fresh = records.new_record(self.system, task.label(), task.task_id, self.config_ref, task.output_digests())
        return {"job": rendered.path, "config": {"stem": stem, "fresh": fresh, "settings": settings.describe(),
                                                 "job_num": job_num}, "log": None}

    def submitted(self, job_file_path: str, job_id: Any, info: dict) -> dict[str, Any]:
        """law's ``get_extra_submission_data``: the attempt goes into the task's job record."""
        stem, fresh = info["stem"], info["fresh"]
        ok = job_id not in (None, JobData.dummy_job_id) and not isinstance(job_id, Exception)
        job = str(job_id) if ok else None
        logfile = str(records.log_path(stem, job)) if ok else None
        error = None if ok else self.workflow_proxy.job_manager.submit_errors.get(str(job_file_path),
                                                                                  "submission failed")
        records.add_attempt(stem, fresh, job, logfile, info["settings"], error)
        if ok:
            self._jobs[info["job_num"]] = (job, stem, fresh["task"])
        log.info("%s: %s", fresh["task"], f"submitted as {self.system} job {job}" if ok else f"not submitted: {error}")
        return {"log": logfile, "task": fresh["task"], "stem": str(stem), "job": job}

    # ------------------------------------------------------------------ polling

    def sync_jobs(self) -> None:
        """Job states law saw since the last call into the job records and the display."""
        proxy = self.workflow_proxy
        manager = proxy.job_manager
        for job_num, data in list(proxy.job_data.jobs.items()):
            extra = data.get("extra") or {}
            if job_num not in self._jobs and extra.get("stem") and extra.get("job"):
                # a job an earlier run of the same config submitted (law reattached to it)
                self._jobs[job_num] = (str(extra["job"]), Path(extra["stem"]), extra.get("task", ""))
            if job_num not in self._jobs:
                continue
            job, stem, label = self._jobs[job_num]
            status = data["status"]
            if status is None or self._seen.get(job) == status:
                continue
            self._seen[job] = status
            if status == manager.PENDING:
                records.update_attempt(stem, job, state="pending")
            elif status == manager.RUNNING:
                records.update_attempt(stem, job, state="running")
                publish({"task": label, "state": "running"})
                publish({"task": label, "state": "progress", "percent": 0,
                         "message": f"{label}: {self.system} job {job} running"})
            elif status == manager.FINISHED:
                records.update_attempt(stem, job, state="finished", exit_code=0, noticed=manager.noticed.get(job))
                publish({"task": label, "state": "done"})
            elif status in (manager.RETRY, manager.FAILED):
                final = status == manager.FAILED
                error = data.get("error") or "failed"
                record = records.update_attempt(stem, job, state="failed", exit_code=data.get("code"), error=error,
                                                noticed=manager.noticed.get(job), final=final)
                attempts = len(record["attempts"]) if record else 1
                log.info("%s: %s job %s failed (%s)%s", label, self.system, job, error,
                         "" if final else "; submitting it again")
                if final:
                    self._failures[label] = {"task": label, "job_id": job, "error": error, "attempts": attempts,
                                             "log": str(records.log_path(stem, job))}
                    publish({"task": label, "state": "failed"})
                else:
                    publish({"task": label, "state": "progress", "percent": 0,
                             "message": f"{label}: {self.system} job {job} failed ({error}); submitting it again"})

    def final_failures(self) -> list[dict]:
        self.sync_jobs()
        return list(self._failures.values())

    def publish_message(self, msg: Any, stdout: Any = None, scheduler: bool = True, **kwargs: Any) -> None:
        """law's messages: to the log file, and to luigid only when they change."""
        text = uncolored(str(msg)).strip()
        if text == self._message:
            return
        self._message = text
        log.info("%s: %s", self.label(), text)
        if scheduler and callable(getattr(self, "set_status_message", None)):
            self.set_status_message(text)

    def modify_polling_status_line(self, status_line: str) -> str:
        """law's status line without its time stamp and changes since the last poll, so that it
        changes (and is sent to luigid) only when the job counts change."""
        line = re.sub(r"^\s*\d\d:\d\d:\d\d:\s*", "", uncolored(status_line))
        return re.sub(r"\s*\([+-]\d+\)", "", line)


def _hooks(prefix: str) -> dict[str, Any]:
    """The ``<system>_*`` hooks law's remote workflow of that system asks its task for."""

    @contextlib.contextmanager
    def run_context(self: StageJobs) -> Iterator[None]:
        with contextlib.redirect_stdout(_ToLog()):
            yield

    return {
        f"{prefix}_output_directory": lambda self: self.output_directory(),
        f"{prefix}_create_job_manager": lambda self, **kwargs: MANAGERS[prefix](
            output_root=self.cfg.output_root, threads=kwargs.get("threads", 1)),
        f"{prefix}_create_job_file_factory": lambda self, **kwargs: _NoFactory(),
        f"{prefix}_post_submit_delay": lambda self: self.poll_interval * 60 if LAW_DEFAULT_TIMING else 0,
        f"{prefix}_check_job_completeness": lambda self: True,
        f"{prefix}_dump_intermediate_job_data": lambda self: False,
        f"{prefix}_poll_callback": lambda self, poll_data: self.sync_jobs(),
        f"{prefix}_post_poll_callback": lambda self, success, duration: self.sync_jobs(),
        f"{prefix}_workflow_run_context": run_context,
        f"{prefix}_workflow_run_decorators": [_run_to_the_end],
        f"{prefix}_job_kwargs_submit": {"retry_delay": SUBMIT_RETRY_DELAY_S},
    }


def _proxy(base: type) -> type:
    def create_job_file(self: Any, job_num: int, branches: list[int]) -> dict[str, Any]:
        return self.task.job_file(job_num, branches)

    def get_extra_submission_data(self: Any, job_file_path: str, job_id: Any, config: Any, log: Any = None) -> dict:
        return self.task.submitted(job_file_path, job_id, config)

    def _can_skip_job(self: Any, job_num: int, branches: list[int]) -> bool:
        """law skips a job whose tasks are complete; a job whose task waits for a failed input is
        skipped too (never submitted; the run's summary lists it as not run)."""
        if base._can_skip_job(self, job_num, branches):
            return True
        if not self.task.blocked(branches):
            return False
        self._skip_jobs[job_num] = True
        self.job_data.jobs.setdefault(job_num, self.job_data_cls.job_data(branches=branches))
        self.job_data.jobs[job_num]["status"] = self.job_manager.FINISHED
        return True

    return type(base.__name__.replace("WorkflowProxy", "Proxy"), (base,),
                {"create_job_file": create_job_file, "get_extra_submission_data": get_extra_submission_data,
                 "_can_skip_job": _can_skip_job})


def _workflow(system: str, name: str, base: type) -> type:
    proxy = _proxy(base.workflow_proxy_cls)
    return type(name, (StageJobs, base), {"system": system, "workflow_proxy_cls": proxy, "__module__": __name__,
                                          "__doc__": f"{StageJobs.__doc__} On {system}.", **_hooks(system)})


SlurmJobs = _workflow("slurm", "SlurmJobs", law.slurm.SlurmWorkflow)
HTCondorJobs = _workflow("htcondor", "HTCondorJobs", law.htcondor.HTCondorWorkflow)
LSFJobs = _workflow("lsf", "LSFJobs", law.lsf.LSFWorkflow)
WORKFLOWS = {"slurm": SlurmJobs, "htcondor": HTCondorJobs, "lsf": LSFJobs}


class BatchAnalysis(ConfigReference, luigi.WrapperTask):
    """Every stage-and-sample workflow of the config up to ``until`` on one batch system."""

    until = luigi.Parameter(description="the last stage to run")
    system = luigi.ChoiceParameter(choices=tuple(WORKFLOWS), description="the batch system")
    scheduler_url = luigi.Parameter(default="", significant=False, visibility=ParameterVisibility.PRIVATE)

    def groups(self) -> list[tuple[str, str, int]]:
        """(family, group, depth) of every stage workflow, in stage order."""
        from tracerflow.workflows.analysis import stage_tasks

        seen: dict[tuple[str, str, int], None] = {}
        for task in stage_tasks(self.config, tuple(self.overrides), self.until):
            seen.setdefault((task.task_family, group_of(task.param_kwargs), depth_of(task)), None)
        return list(seen)

    def requires(self) -> list[StageJobs]:
        cls = WORKFLOWS[self.system]
        return [cls(family=family, group=group, depth=depth, config=self.config, overrides=tuple(self.overrides),
                    config_ref=self.config_ref, scheduler_url=self.scheduler_url)
                for family, group, depth in self.groups()]

    def label(self) -> str:
        return f"Analysis(until={self.until}, batch={self.system})"
