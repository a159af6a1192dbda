"""The single-node Slurm of conftest.py runs real jobs: completion, failure, cancellation."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def _sbatch(slurm, tmp_path: Path, command: str) -> int:
    return slurm.submit(f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%j.out", "--wrap", command)


def test_a_job_runs_to_completion(slurm, tmp_path):
    job = _sbatch(slurm, tmp_path, f"echo hi > {tmp_path}/out")
    record = slurm.finished(job)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0")
    assert (tmp_path / "out").read_text() == "hi\n"


def test_a_failing_job_is_failed_with_its_exit_code(slurm, tmp_path):
    job = _sbatch(slurm, tmp_path, "exit 3")
    record = slurm.finished(job)
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "3:0")


def test_a_cancelled_job_is_cancelled(slurm, tmp_path):
    job = _sbatch(slurm, tmp_path, "sleep 60")
    slurm.wait_for(job, {"RUNNING"})
    slurm.run("scancel", str(job))
    record = slurm.finished(job, timeout=15)
    assert record["JobState"] == "CANCELLED"
