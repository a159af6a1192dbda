"""``tracerflow run --batch slurm`` on the real single-node Slurm of single_node.py, with a real
luigid: every task of the toy pipeline is a Slurm job, a running job's progress reaches luigid,
jobs killed mid-run (scancel; SIGKILL of the job's process) are submitted again, and the outputs
are byte-identical to a local run of the same config. A job that fails for good is named, with
its job id and log, by the run and by ``tracerflow show``."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tracerflow.tasks import STAGES
from tracerflow.workflows.analysis import stage_tasks
from tracerflow.workflows.batch import records

from ..workflow.conftest import scheduler  # noqa: F401 (the luigid fixture)
from ..workflow.helpers import SMALL, output_root, tracerflow

pytestmark = pytest.mark.slurm

#: The small toy (tests/workflow/helpers.py) with two files per BuildEvents/BuildGraphs/ApplySelections
#: job, three folds, and TrainFold running long enough (many short epochs) to report to luigid.
ARGS = (*SMALL, "--set", "scheduler.files_per_task=2", "--set", "write.n_folds=3", "--set", "train.epochs=3",
        "--set", "train.early_stopping=null", "--set", "train.batch_size=256")
OVERRIDES = tuple(ARGS[1::2])
VOLATILE = ("*.timings.csv", "*.log")
RUN_TIMEOUT = 900


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not any(p.match(v) for v in VOLATILE)}


def _luigid_running(url: str) -> dict[str, dict]:
    query = urllib.parse.quote(json.dumps({"status": "RUNNING", "upstream_status": "", "search": ""}))
    with urllib.request.urlopen(f"{url}/api/task_list?data={query}", timeout=10) as resp:
        return json.load(resp)["response"]


def _slurm_jobs(slurm) -> dict[str, tuple[str, str]]:
    """What Slurm keeps of every job (pending, running, and ended for MinJobAge): id -> (name, state)."""
    out = slurm.run("squeue", "--noheader", "--states=all", "--format=%i|%j|%T").stdout
    return {jid: (name, state) for jid, name, state in (line.split("|") for line in out.split())}


def _freeze_job(spec_part: str, exits: Path) -> tuple[str, psutil.Process] | None:
    """Stop (SIGSTOP) the Python process of a running job whose spec path contains ``spec_part``
    before it can end on its own: (Slurm job id, process), or None when there is no such job or it
    already wrote its exit file (then it is let go). A stopped job is killed for certain, however
    short its task: the race the test would otherwise lose on a loaded machine."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "tracerflow.workflows.batch.job" not in cmd or spec_part not in cmd[-1]:
            continue
        try:
            proc.suspend()
            job = proc.environ()["SLURM_JOB_ID"]
        except (psutil.Error, KeyError):
            continue
        if (exits / f"{job}.json").exists():
            proc.resume()
            continue
        return job, proc
    return None


def test_the_toy_pipeline_as_slurm_jobs_survives_killed_jobs_and_matches_a_local_run(slurm, scheduler, tmp_path):
    batch, local = tmp_path / "batch", tmp_path / "local"
    batch.mkdir()
    local.mkdir()
    cmd = [str(Path(sys.executable).with_name("tracerflow")), "run", *ARGS, "--batch", "slurm",
           "--scheduler-url", scheduler.url]
    out, err = open(tmp_path / "batch.out", "w+"), open(tmp_path / "batch.err", "w+")
    proc = subprocess.Popen(cmd, cwd=batch, stdout=out, stderr=err, env={**os.environ, "PYTHONHASHSEED": "0"})
    progress: list[tuple[str, str, int, str]] = []  # (family, worker, percent, message) of luigid's running tasks
    jobs: dict[str, tuple[str, str]] = {}
    cancelled = killed = None
    exits = records.exits_dir(output_root(batch))
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            jobs.update(_slurm_jobs(slurm))
            if cancelled is None:  # scancel a BuildEvents job of zprime as soon as one runs
                frozen = _freeze_job("/BuildEvents/zprime/", exits)
                if frozen is not None:
                    cancelled, victim = frozen
                    slurm.run("scancel", cancelled)  # Slurm sends SIGCONT, then SIGTERM
            # SIGKILL of TrainFold fold 1's own process, mid-training: stopped, it cannot move on
            # while luigid is asked whether it has reported an epoch yet (else it goes on)
            frozen = _freeze_job("/TrainFold/fold_1.spec.json", exits) if killed is None else None
            for task in _luigid_running(scheduler.url).values():
                progress.append((task["name"], task.get("worker_running") or "", task["progress_percentage"] or 0,
                                 task["status_message"] or ""))
                if frozen is not None and task["name"] == "TrainFold" and task["params"].get("fold") == "1" \
                        and 0 < (task["progress_percentage"] or 0) < 100:
                    killed = frozen[0]
                    frozen[1].send_signal(signal.SIGKILL)
            if frozen is not None and killed is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    frozen[1].resume()
            time.sleep(0.2 if frozen is None else 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    out.seek(0), err.seek(0)
    text = out.read() + err.read()
    assert proc.returncode == 0, text
    # the run goes on once a job's exit file says it ended; Slurm records the end a moment later
    settle = time.monotonic() + 60
    while any(state in ("PENDING", "RUNNING", "COMPLETING") for _, state in _slurm_jobs(slurm).values()) \
            and time.monotonic() < settle:
        time.sleep(0.2)
    jobs.update(_slurm_jobs(slurm))

    # every task instance ran as a Slurm job (its last attempt COMPLETED), named by its task
    tasks = stage_tasks("", OVERRIDES, "last")
    assert {t.task_family for t in tasks} == set(STAGES) - {"PrepareSample", "TrainBackgroundGenerator"}  # no predict.samples, no background
    root = output_root(batch)
    for task in tasks:
        record = records.read_record(records.task_stem(root, task.task_family, records.significant_params(task)))
        assert record is not None, task.label()
        last = record["attempts"][-1]
        assert last["state"] == "finished", (task.label(), record)
        assert jobs[last["job_id"]] == (f"tf-{task.task_family}-{records.task_key(records.significant_params(task))}"
                                        .replace("/", "-"), "COMPLETED"), task.label()
        assert records.read_exit(root, last["job_id"])["exit_code"] == 0
        assert Path(last["log"]).is_file() and last["log"].endswith(f".{last['job_id']}.log")
    ids = [a["job_id"] for t in tasks for a in records.read_record(
        records.task_stem(root, t.task_family, records.significant_params(t)))["attempts"]]
    assert len(ids) == len(tasks) + 2 and len(set(ids)) == len(ids), (cancelled, killed, text)

    # the two killed jobs were submitted again
    assert cancelled is not None and killed is not None, (cancelled, killed)
    assert jobs[cancelled][1] == "CANCELLED" and jobs[killed][1] == "FAILED"
    for victim in (cancelled, killed):
        stem = next(records.task_stem(root, t.task_family, records.significant_params(t)) for t in tasks
                    if victim in [a["job_id"] for a in records.read_record(
                        records.task_stem(root, t.task_family, records.significant_params(t)))["attempts"]])
        first, second = records.read_record(stem)["attempts"]
        assert (first["job_id"], first["state"], second["state"]) == (victim, "failed", "finished")
    assert "(2 again after a failure)" in text

    # a running job's progress and status message reached luigid, from the job's own worker
    training = [(p, m) for name, worker, p, m in progress if name == "TrainFold" and worker.startswith("tracerflow-job")]
    assert any(0 < p < 100 and re.match(r"TrainFold \d: epoch \d+ of 3 done", m) for p, m in training), progress[-10:]

    # tracerflow show names each task's job and log; a dry run finds nothing to submit
    shown = tracerflow("show", *ARGS, cwd=batch, check=True).stdout
    assert len(re.findall(r"ran as job (\d+) \(slurm, finished(?:, attempt 2)?\); log: \S+\.\1\.log", shown)) \
        >= len(tasks)
    dry = tracerflow("run", *ARGS, "--batch", "slurm", "--dry-run", cwd=batch)
    assert dry.returncode == 0 and dry.stdout.startswith("tracerflow: dry run: nothing to submit"), dry.stdout

    # the same config run locally gives the same bytes in every output file
    tracerflow("run", *ARGS, cwd=local, check=True)
    ours, theirs = _digests(root), _digests(output_root(local))
    assert ours.keys() == theirs.keys()
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert not (output_root(local).parent / "logs" / "toy-ftag" / "batch").exists()


def test_a_job_that_keeps_failing_is_named_with_its_job_id_and_log(slurm, tmp_path, shared_data):
    data = tmp_path / "data"
    data.mkdir()
    good = shared_data / "uproot-HZZ.root"
    shutil.copy(good, data / "good.root")
    (data / "broken.root").write_bytes(good.read_bytes()[:5000])
    config = tmp_path / "analysis.yaml"
    config.write_text(
        "samples:\n  s:\n    files: [data/good.root, data/broken.root]\n"
        "event:\n  template:\n    collections:\n      jets: {branches: {px: Jet_Px, py: Jet_Py, pz: Jet_Pz, e: Jet_E}, "
        "four_vector: pxpypze}\n"
        "graph:\n  template: {nodes: jets, node_features: {pt: jets.pt}}\n"
        "selection:\n  template: {cuts: {one_jet: count(jets) >= 1}}\n"
        "scheduler: {files_per_task: 1}\n"
        "batch: {retries: 1, job: {mem: 500M}}\n")
    dry = tracerflow("run", "--config", str(config), "--batch", "slurm", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 3, dry.stderr
    assert "6 of 6 tasks would be submitted" in dry.stdout and "BuildEvents(sample=s, file=broken.root)" in dry.stdout
    assert "--mem=500M" in dry.stdout and not (tmp_path / "tracerflow-output").exists()

    proc = tracerflow("run", "--config", str(config), "--batch", "slurm", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    root = tmp_path / "tracerflow-output" / "tracerflow"
    record = records.read_record(records.task_stem(root, "BuildEvents", {"sample": "s", "file": "broken.root"}))
    assert [a["state"] for a in record["attempts"]] == ["failed", "failed"]
    job, log = record["attempts"][-1]["job_id"], record["attempts"][-1]["log"]
    assert log.endswith(f"broken.{job}.log") and "broken.root" in Path(log).read_text()
    assert f"failed: BuildEvents(sample=s, file=broken.root): job {job}, exit code 1" in proc.stdout
    assert f"log: {log}" in proc.stdout and "(2 attempts)" in proc.stdout
    assert "not run: BuildGraphs(sample=s, file=broken.root), ApplySelections(sample=s, file=broken.root)" \
        in proc.stdout
    assert "3 ran as slurm jobs" in proc.stdout.splitlines()[0]  # the good file's events, graphs ...
    assert (root / "selections" / "s" / "good.h5").is_file()  # ... and selections
    assert re.search(rf"tracerflow: BuildEvents jobs of sample s failed\n.*\n    BuildEvents\(sample=s, "
                     rf"file=broken.root\): job {job}, exit code 1", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr

    shown = tracerflow("show", "--config", str(config), cwd=tmp_path, check=True).stdout
    assert f"ran as job {job} (slurm, failed, attempt 2); log: {log}" in shown
    again = tracerflow("run", "--config", str(config), "--batch", "slurm", "--dry-run", cwd=tmp_path)
    assert again.returncode == 3 and "3 of 6 tasks would be submitted" in again.stdout


def test_an_interrupted_run_leaves_its_jobs_running_and_the_next_run_reattaches_to_them(slurm, tmp_path):
    args = (*SMALL, "--until", "BuildEvents", "--batch", "slurm")
    earlier = set(_slurm_jobs(slurm))  # other tests' jobs, which Slurm keeps for MinJobAge

    def generating() -> set[str]:
        return {jid for jid, (name, _) in _slurm_jobs(slurm).items()
                if jid not in earlier and name.startswith("tf-GenerateSample")}

    cmd = [str(Path(sys.executable).with_name("tracerflow")), "run", *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len(generating()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "interrupted; the jobs it submitted keep running: the same command reattaches to them" in err
    assert "Traceback" not in err
    submitted = generating()
    assert len(submitted) == 2

    again = tracerflow("run", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    root = output_root(tmp_path)
    for sample in ("ttbar", "zprime"):
        record = records.read_record(records.task_stem(root, "GenerateSample", {"sample": sample}))
        assert [a["job_id"] for a in record["attempts"]] in [[jid] for jid in submitted], record
        assert record["attempts"][0]["state"] == "finished"
    assert generating() == submitted
