"""What each batch job asks for, from the validated ``batch`` block, and how each batch system
is told.

Contract: :func:`job_settings` reads ``batch.job`` and ``batch.families.<Family>`` of a
validated config (lib/config/schema.py holds every default; keys are read, never guessed);
:func:`directives` turns the settings into the lines of a job file of one system (``#SBATCH``,
HTCondor submit-description or ``#BSUB`` lines), which :mod:`.stage` writes into the job files it
submits and the dry run prints. Nothing here imports the batch layer.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from tracerflow.config import Config
from tracerflow.config.schema import memory_mb, walltime_seconds

SYSTEMS = ("slurm", "htcondor", "lsf")


@dataclass(frozen=True)
class JobSettings:
    """One job's request (``batch.job`` with its family's keys over it)."""

    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus: int = 1
    gpus: int = 0
    extra: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """``partition=debug time=4:00:00 mem=4G cpus=2 gpus=1 extra=[--qos=short]``: what is set."""
        parts = [f"{name}={value}" for name, value in
                 (("partition", self.partition), ("time", self.time), ("mem", self.mem)) if value is not None]
        parts += [f"cpus={self.cpus}", f"gpus={self.gpus}"]
        if self.extra:
            parts.append(f"extra=[{', '.join(self.extra)}]")
        return " ".join(parts)


def job_settings(cfg: Config, family: str) -> JobSettings:
    """The settings of ``family``'s jobs: ``batch.job`` with ``batch.families.<family>`` over it."""
    block = cfg["batch"]
    merged = {**block["job"], **(block["families"][family] or {})}
    time = merged["time"]
    return JobSettings(partition=merged["partition"], time=None if time is None else str(time), mem=merged["mem"],
                       cpus=merged["cpus"], gpus=merged["gpus"], extra=tuple(merged["extra"]))


def directives(system: str, settings: JobSettings) -> list[str]:
    """The job-file lines asking ``system`` for ``settings`` (partition, wall time, memory, CPUs,
    GPUs, then the extra lines as given)."""
    if system == "slurm":
        return _slurm(settings)
    if system == "htcondor":
        return _htcondor(settings)
    if system == "lsf":
        return _lsf(settings)
    raise ValueError(f"unknown batch system {system!r}; known: {', '.join(SYSTEMS)}")


def _slurm(s: JobSettings) -> list[str]:
    lines = [f"#SBATCH --partition={s.partition}"] if s.partition else []
    lines += [f"#SBATCH --time={s.time}"] if s.time else []
    lines += [f"#SBATCH --mem={s.mem}"] if s.mem else []
    lines.append(f"#SBATCH --cpus-per-task={s.cpus}")
    lines += [f"#SBATCH --gres=gpu:{s.gpus}"] if s.gpus else []
    return lines + [line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in s.extra]


def _htcondor(s: JobSettings) -> list[str]:
    lines = [f"request_cpus = {s.cpus}"]
    lines += [f"request_memory = {memory_mb(s.mem)}"] if s.mem else []
    lines += [f"request_gpus = {s.gpus}"] if s.gpus else []
    lines += [f"+MaxRuntime = {walltime_seconds(s.time)}"] if s.time else []
    return lines + list(s.extra)


def _lsf(s: JobSettings) -> list[str]:
    lines = [f"#BSUB -q {s.partition}"] if s.partition else []
    if s.time:
        minutes = -(-walltime_seconds(s.time) // 60)
        lines.append(f"#BSUB -W {minutes // 60}:{minutes % 60:02d}")
    lines += [f"#BSUB -M {memory_mb(s.mem)}MB"] if s.mem else []
    lines.append(f"#BSUB -n {s.cpus}")
    lines += [f'#BSUB -gpu "num={s.gpus}"'] if s.gpus else []
    return lines + [line if line.startswith("#BSUB") else f"#BSUB {line}" for line in s.extra]


@dataclass(frozen=True)
class JobFile:
    """The file(s) of one job as :func:`job_file` renders them: ``path`` is what is submitted
    (``sbatch``, ``condor_submit``, ``bsub <``), ``files`` maps every path to its text."""

    path: str
    files: dict[str, str]


def job_file(system: str, *, stem: str, name: str, cwd: str, settings: JobSettings, command: list[str]) -> JobFile:
    """The job file of one task for ``system``: its settings, stdout and stderr to
    ``<stem>.<job id>.log`` (HTCondor: stderr to ``.err`` beside it), the submitter's environment
    (Slurm: ``--export=ALL`` whatever a site's ``SBATCH_EXPORT``), run in ``cwd``, the start
    time exported as ``TRACERFLOW_JOB_STARTED``, then ``command`` (exec'd, so that the batch
    system's signals reach it)."""
    body = ["export TRACERFLOW_JOB_STARTED=$(date +%s.%N)", "export PYTHONUNBUFFERED=1",
            f"cd {shlex.quote(cwd)}", f"exec {shlex.join(command)}"]
    if system == "slurm":
        log = stem.replace("%", "%%") + ".%j.log"
        head = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", f"#SBATCH --error={log}",
                "#SBATCH --export=ALL", f"#SBATCH --chdir={cwd}", *directives(system, settings)]
        return JobFile(f"{stem}.sh", {f"{stem}.sh": "\n".join([*head, "", *body]) + "\n"})
    if system == "lsf":
        head = ["#!/bin/bash", f"#BSUB -J {name}", f"#BSUB -o {stem}.%J.log", f"#BSUB -e {stem}.%J.log",
                f"#BSUB -cwd {cwd}", *directives(system, settings)]
        return JobFile(f"{stem}.sh", {f"{stem}.sh": "\n".join([*head, "", *body]) + "\n"})
    if system == "htcondor":
        script = "\n".join(["#!/bin/bash", 'export TRACERFLOW_JOB_ID="$1"', *body]) + "\n"
        out = f"{stem}.$(ClusterId).$(ProcId)"
        jdl = ["universe = vanilla", f"executable = {stem}.sh", "arguments = $(ClusterId).$(ProcId)",
               "getenv = true", f"initialdir = {cwd}", f"batch_name = {name}", f"output = {out}.log",
               f"error = {out}.err", f"log = {stem}.condor.log", *directives(system, settings), "queue"]
        return JobFile(f"{stem}.jdl", {f"{stem}.sh": script, f"{stem}.jdl": "\n".join(jdl) + "\n"})
    raise ValueError(f"unknown batch system {system!r}; known: {', '.join(SYSTEMS)}")
