"""The ``batch`` block: validated like every block, left out of config_ref and of every target's
digest, merged per task family, and written into each batch system's job file."""
from __future__ import annotations

import pytest

from tracerflow.config import ConfigError, load_config
from tracerflow.config.schema import STAGE_NAMES
from tracerflow.tasks import STAGES
from tracerflow.tasks.base import config_ref
from tracerflow.workflows.analysis import stage_tasks
from tracerflow.workflows.batch import records
from tracerflow.workflows.batch.settings import JobSettings, directives, job_file, job_settings

SMALL = ("samples.ttbar.generate.n_jets=3000", "samples.zprime.generate.n_jets=2000",
         "samples.ttbar.generate.events_per_file=1000", "samples.zprime.generate.events_per_file=1000")
BATCH = ("batch.retries=5", "batch.poll_interval=0.5", "batch.job.partition=long", "batch.job.mem=2G",
         "batch.families.TrainFold.gpus=1", "batch.families.TrainFold.time='4:00:00'")


def test_the_schema_names_every_stage():
    assert STAGE_NAMES == STAGES


@pytest.mark.parametrize("override,key,words", [
    ("batch.families.TrainFol.gpus=1", "batch.families.TrainFol", "did you mean 'TrainFold'"),
    ("batch.job.time=soon", "batch.job.time", "is not a wall time"),
    ("batch.job.time=4:00:00", "batch.job.time", "got the number 14400: quote the wall time"),
    ("batch.job.mem=4X", "batch.job.mem", "is not a memory size"),
    ("batch.job.cpus=0", "batch.job.cpus", "expected int >= 1"),
    ("batch.retries=-1", "batch.retries", "expected int >= 0"),
    ("batch.families.TrainFold.partiton=gpu", "batch.families.TrainFold.partiton", "did you mean 'partition'"),
    ("batch.sytem=slurm", "batch.sytem", "unknown key"),
])
def test_a_bad_batch_key_is_a_config_error_naming_it(override, key, words):
    with pytest.raises(ConfigError) as caught:
        load_config(None, (override,))
    assert caught.value.key == key and words in caught.value.message


def test_batch_settings_change_neither_config_ref_nor_any_digest():
    plain = stage_tasks("", SMALL, "Predict")
    batched = stage_tasks("", SMALL + BATCH, "Predict")
    assert config_ref("", SMALL) == config_ref("", SMALL + BATCH)
    assert [t.task_id for t in plain] == [t.task_id for t in batched]
    assert [t.output_digests() for t in plain] == [t.output_digests() for t in batched]
    assert len(plain) > 10


def test_a_family_s_keys_go_over_the_job_defaults():
    cfg = load_config(None, BATCH + ("batch.job.extra=['--qos=short']",))
    assert job_settings(cfg, "BuildEvents") == JobSettings(partition="long", mem="2G", extra=("--qos=short",))
    assert job_settings(cfg, "TrainFold") == JobSettings(partition="long", time="4:00:00", mem="2G", gpus=1,
                                                         extra=("--qos=short",))
    assert job_settings(load_config(None), "Predict") == JobSettings()
    assert job_settings(load_config(None, ("batch.job.time='90'",)), "Predict").time == "90"


def test_each_system_is_told_the_same_request_in_its_own_words():
    request = JobSettings(partition="gpu", time="1-02:30:00", mem="1500M", cpus=4, gpus=2, extra=("--qos=x",))
    assert directives("slurm", request) == [
        "#SBATCH --partition=gpu", "#SBATCH --time=1-02:30:00", "#SBATCH --mem=1500M", "#SBATCH --cpus-per-task=4",
        "#SBATCH --gres=gpu:2", "#SBATCH --qos=x"]
    assert directives("lsf", JobSettings(partition="short", time="90", mem="2G", extra=("-P proj",))) == [
        "#BSUB -q short", "#BSUB -W 1:30", "#BSUB -M 2048MB", "#BSUB -n 1", "#BSUB -P proj"]
    assert directives("htcondor", JobSettings(time="30", mem="1G", gpus=1, extra=('+JobFlavour = "espresso"',))) == [
        "request_cpus = 1", "request_memory = 1024", "request_gpus = 1", "+MaxRuntime = 1800",
        '+JobFlavour = "espresso"']


def test_job_files_log_by_job_id_run_in_the_submitter_s_directory_and_exec_the_command():
    command = ["/venv/bin/python", "-m", "tracerflow.workflows.batch.job", "/out/x y.spec.json"]
    slurm = job_file("slurm", stem="/out/BuildEvents/s/f", name="tf-BuildEvents-s-f", cwd="/work",
                     settings=JobSettings(mem="1G"), command=command)
    assert slurm.path == "/out/BuildEvents/s/f.sh"
    text = slurm.files[slurm.path]
    assert text.startswith("#!/bin/bash\n#SBATCH --job-name=tf-BuildEvents-s-f\n")
    assert "#SBATCH --output=/out/BuildEvents/s/f.%j.log\n#SBATCH --error=/out/BuildEvents/s/f.%j.log\n" in text
    assert "#SBATCH --export=ALL\n#SBATCH --chdir=/work\n#SBATCH --mem=1G\n" in text
    assert text.endswith("exec /venv/bin/python -m tracerflow.workflows.batch.job '/out/x y.spec.json'\n")
    condor = job_file("htcondor", stem="/out/T/fold_0", name="tf-T-fold_0", cwd="/work", settings=JobSettings(),
                      command=command)
    assert condor.path == "/out/T/fold_0.jdl" and set(condor.files) == {"/out/T/fold_0.jdl", "/out/T/fold_0.sh"}
    jdl = condor.files[condor.path]
    assert "executable = /out/T/fold_0.sh\n" in jdl and "output = /out/T/fold_0.$(ClusterId).$(ProcId).log\n" in jdl
    assert "getenv = true\n" in jdl and jdl.endswith("queue\n")
    assert 'export TRACERFLOW_JOB_ID="$1"' in condor.files["/out/T/fold_0.sh"]
    lsf = job_file("lsf", stem="/out/T/fold_0", name="n", cwd="/work", settings=JobSettings(), command=command)
    assert "#BSUB -o /out/T/fold_0.%J.log\n" in lsf.files[lsf.path]


def test_records_name_a_task_by_what_it_works_on(tmp_path):
    assert records.task_key({"config_ref": "x", "sample": "ttbar", "file": "sub/ttbar_0001.root"}) == "ttbar/sub/ttbar_0001"
    assert records.task_key({"config_ref": "x", "fold": 3}) == "fold_3"
    assert records.task_key({"config_ref": "x"}) == "all"
    task = stage_tasks("", SMALL, "BuildEvents")[-1]
    assert records.significant_params(task) == {"sample": task.sample, "file": task.file}
    stem = records.task_stem(tmp_path / "toy-ftag", "BuildEvents", records.significant_params(task))
    assert stem == tmp_path / "logs" / "toy-ftag" / "batch" / "BuildEvents" / task.sample / task.file[:-5]


def test_a_batch_run_without_the_system_s_commands_stops_before_writing_anything(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tracerflow.workflows.batch import unavailable

    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    cmd = [str(Path(sys.executable).with_name("tracerflow")), "run", "--until", "GenerateSample", "--batch", "lsf"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "tracerflow: --batch lsf needs bsub and bjobs on PATH, and found none here; "
        "`tracerflow run --batch lsf --dry-run` lists the jobs without them"]
    assert list(tmp_path.iterdir()) == []
    dry = subprocess.run([*cmd, "--dry-run"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert dry.returncode == 3 and "GenerateSample: cpus=1 gpus=0  (lsf: -n 1)" in dry.stdout
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert unavailable("slurm").startswith("--batch slurm needs sbatch and squeue on PATH")
    assert "condor_submit and condor_q" in unavailable("htcondor")
