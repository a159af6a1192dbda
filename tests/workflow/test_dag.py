"""The DAG end to end through the tracerflow command, luigi's own command and a real luigid."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest

from tracerflow.config import load_config

from .helpers import SMALL, datasets, tracerflow

FILE_STAGE_DIRS = ("events", "graphs", "selections")
STAGE_DIRS = (*FILE_STAGE_DIRS, "resample", "train_sample")
CONFIG = load_config(None, SMALL[1::2])
N_FILES = sum(len(CONFIG.sample_files(s)) for s in ("ttbar", "zprime"))
CONVERTED = tuple(CONFIG["tfrecords"]["splits"])  # splits a plain `tracerflow run` must at least write
FAMILIES = {"events": "BuildEvents", "graphs": "BuildGraphs", "selections": "ApplySelections",
            "resample": "Resample", "train_sample": "WriteTrainSample"}


def _targets(root: Path) -> list[Path]:
    """The HDF5 targets of every stage (ConvertTFRecords' are in :func:`_tfrecords`)."""
    return sorted(p for d in STAGE_DIRS for p in (root / d).rglob("*.h5"))


def _tfrecords(root: Path) -> list[Path]:
    """ConvertTFRecords' shards and metadata.json files."""
    return sorted(p for p in (root / "tfrecords").rglob("*") if p.is_file())


def _stage(root: Path, path: Path) -> str:
    return path.relative_to(root).parts[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A directory where SMALL has run (tests may run on in it); :func:`_as_run` keeps its outputs
    as that run left them."""
    work = tmp_path_factory.mktemp("dag")
    tracerflow("run", *SMALL, cwd=work, check=True)
    shutil.copytree(work / "tracerflow-output", _as_run(work))
    return work


def _as_run(work: Path) -> Path:
    return work.parent / f"{work.name}-as-run" / "tracerflow-output"


@pytest.fixture(scope="module")
def small_run_outputs(small_run) -> Path:
    """The outputs of the module's run of SMALL, as it left them (a copy no test changes)."""
    return _as_run(small_run)


@pytest.mark.slow
def test_default_config_runs_whole_dag(small_run):
    root = small_run / "tracerflow-output" / "toy-ftag"
    targets = _targets(root)
    assert N_FILES >= 4
    per_stage = {d: [p for p in targets if _stage(root, p) == d] for d in STAGE_DIRS}
    assert all(len(per_stage[d]) == N_FILES for d in FILE_STAGE_DIRS)
    assert {p.name for p in per_stage["resample"]} >= {f"{s}.h5" for s in CONVERTED}
    assert {p.name for p in per_stage["train_sample"]} >= {f"{s}{x}.h5" for s in CONVERTED for x in ("", "_folds")}
    for path in targets:
        with h5py.File(path) as f:
            assert f.attrs["complete"]
            assert len(f.attrs["config_digest"]) == 16
            assert f.attrs["schema"].startswith("tracerflow.")
            assert f.attrs["created_by"].split("(")[0] == FAMILIES[_stage(root, path)]
    for split in CONVERTED:
        metadata = json.loads((root / "tfrecords" / split / "metadata.json").read_text())
        assert len(metadata["config_digest"]) == 16 and metadata["created_by"].startswith("ConvertTFRecords(")
        assert metadata["n_shards"] == len(list((root / "tfrecords" / split).glob("shard_*.tfrecord"))) >= 1
    shown = tracerflow("show", *SMALL, cwd=small_run, check=True).stdout
    assert shown.strip().endswith("tasks complete")
    done, total = shown.strip().splitlines()[-1].split()[0].split("/")
    tasks = set(re.findall(r"\[done\] (\w+\(.*?\))(?:  ->|$)", shown, flags=re.M))
    assert done == total and int(total) == len(tasks)
    families = [t.split("(")[0] for t in tasks]
    assert families.count("Analysis") == 1 and families.count("GenerateSample") == 2
    assert all(families.count(f) == N_FILES for f in ("BuildEvents", "BuildGraphs", "ApplySelections"))
    assert {f"ConvertTFRecords(split={s})" for s in CONVERTED} == {t for t in tasks if t.startswith("Convert")}
    for family in ("Resample", "WriteTrainSample"):
        assert {f"{family}(split={s})" for s in CONVERTED} <= set(tasks)


@pytest.mark.slow
def test_rerun_is_a_no_op_and_a_changed_setting_reruns_only_its_stage_and_what_follows(small_run):
    root = small_run / "tracerflow-output" / "toy-ftag"

    def mtimes() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in [*_targets(root), *_tfrecords(root)]}

    before = mtimes()
    assert {_stage(root, p) for p in before} == {*STAGE_DIRS, "tfrecords"}
    tracerflow("run", *SMALL, cwd=small_run, check=True)
    assert mtimes() == before
    cut = ("--set", "selection.template.cuts.pt=jets.pt > 40")
    tracerflow("run", *SMALL, *cut, cwd=small_run, check=True)
    after = mtimes()
    assert after.keys() == before.keys()
    changed = {_stage(root, p) for p in after if after[p] != before[p]}
    assert changed == {"selections", "resample", "train_sample", "tfrecords"}
    tracerflow("run", *SMALL, *cut, "--set", "event.chunk_size=777", "--set", "write.chunk_size=999",
               cwd=small_run, check=True)
    assert mtimes() == after
    folds = ("--set", "write.n_folds=4")
    tracerflow("run", *SMALL, *cut, *folds, cwd=small_run, check=True)
    last = mtimes()
    assert {_stage(root, p) for p in last if last[p] != after[p]} == {"train_sample", "tfrecords"}
    with h5py.File(root / "train_sample" / "train_folds.h5") as f:
        assert f.attrs["n_folds"] == 4 and "fold_3" in f and "fold_4" not in f


@pytest.mark.slow
def test_two_runs_of_one_config_give_identical_bytes_in_every_file(small_run_outputs, tmp_path):
    # the module's run (one worker, string hash seed 0) against one on 2 workers with hash seed 2
    (tmp_path / "b").mkdir()
    tracerflow("run", *SMALL, "--workers", "2", cwd=tmp_path / "b", check=True, hash_seed="2")
    ours, theirs = small_run_outputs, tmp_path / "b" / "tracerflow-output"
    names = _compared(ours)
    assert names == _compared(theirs)
    project = {p.relative_to("toy-ftag").parts[0] for p in names}
    assert project >= {"samples", *STAGE_DIRS, "tfrecords", "train", "predict"}
    produced = {p.name for p in names} | {p.suffix for p in names}
    assert produced >= {"best.pt", "last.pt", "model.h5", "epochs.csv", "iterations.csv", "report.html",
                        "metrics.json", ".png", ".tfrecord", ".root"}
    assert any(p.name.endswith(".torchscript.pt") for p in names)
    for name in names:
        path, twin = ours / name, theirs / name
        if path.suffix == ".h5":
            left, right = datasets(path), datasets(twin)
            assert left.keys() == right.keys(), name
            for key in left:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{name}:{key}")
            with h5py.File(path) as a, h5py.File(twin) as b:
                assert dict(a.attrs) == dict(b.attrs), name
        assert path.read_bytes() == twin.read_bytes(), f"{name}: different bytes"


def _compared(root: Path) -> list[Path]:
    """Every file below ``root`` but the volatile ones (``*.timings.csv``, ``*.log``), relative to it."""
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and not p.name.endswith((".timings.csv", ".log")))


@pytest.mark.slow
def test_luigi_command_runs_one_task(small_run, tmp_path):
    shutil.copytree(small_run / "tracerflow-output", tmp_path / "tracerflow-output")
    target = tmp_path / "tracerflow-output/toy-ftag/selections/ttbar/ttbar_0001.h5"
    target.unlink()
    overrides = json.dumps(list(SMALL[1::2]))
    cmd = [str(Path(sys.executable).with_name("luigi")), "--module", "tracerflow.workflows", "ApplySelections",
           "--sample", "ttbar", "--file", "ttbar_0001.root", "--overrides", overrides, "--local-scheduler"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(target) as f:
        assert f.attrs["complete"]


@pytest.mark.slow
def test_failure_exits_non_zero_and_keeps_finished_targets(tmp_path, shared_data):
    good = shared_data / "uproot-HZZ.root"
    bad = tmp_path / "data" / "broken.root"
    bad.parent.mkdir()
    shutil.copy(good, tmp_path / "data" / "good.root")
    bad.write_bytes(good.read_bytes()[:5000])
    config = tmp_path / "analysis.yaml"
    config.write_text(
        "samples:\n  s:\n    files: [data/good.root, data/broken.root]\n"
        "event:\n  template:\n    collections:\n      jets: {branches: {px: Jet_Px, py: Jet_Py, pz: Jet_Pz, e: Jet_E}, four_vector: pxpypze}\n"
        "graph:\n  template: {nodes: jets, node_features: {pt: jets.pt}}\n"
        "selection:\n  template: {cuts: {one_jet: count(jets) >= 1}}\n"
    )
    proc = tracerflow("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1
    assert "broken.root" in proc.stdout + proc.stderr
    out = tmp_path / "tracerflow-output" / "tracerflow"
    assert (out / "selections/s/good.h5").is_file()
    assert not (out / "events/s/broken.h5").exists()
    assert not list(out.rglob(".*.tmp-*"))
    luigi = [str(Path(sys.executable).with_name("luigi")), "--module", "tracerflow.workflows", "BuildEvents",
             "--sample", "s", "--file", "broken.root", "--config", str(config), "--local-scheduler"]
    assert subprocess.run(luigi, cwd=tmp_path, capture_output=True).returncode != 0


def test_config_errors_name_the_key_and_exit_2(tmp_path):
    proc = tracerflow("validate", "--set", "graph.precsion=float16", cwd=tmp_path)
    assert proc.returncode == 2
    assert "graph.precsion" in proc.stderr and "did you mean 'precision'" in proc.stderr
    proc = tracerflow("run", "--set", "graph.precision=float64", cwd=tmp_path)
    assert proc.returncode == 2 and "graph.precision" in proc.stderr and "float16" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("samples:\n  s: {files: [missing.root]}\nevent: {template: a:B}\ngraph: {template: a:B}\nselection: {template: a:B}\n")
    proc = tracerflow("validate", "--config", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and str(bad) in proc.stderr and "samples.s.files[0]" in proc.stderr


@pytest.mark.slow
def test_central_scheduler_sees_every_task_done(scheduler, tmp_path):
    """Tasks run by two worker processes all reach the scheduler as DONE (their progress while they
    run: tests/workflow/test_watching.py; a task done within a second reports none)."""
    proc = tracerflow("run", *SMALL, "--until", "BuildEvents", "--workers", "2", "--scheduler-port",
                      str(scheduler.port), cwd=tmp_path, check=True)
    assert "tracerflow: done" in proc.stdout
    query = urllib.parse.quote(json.dumps({"status": "DONE"}))
    with urllib.request.urlopen(f"{scheduler.url}/api/task_list?data={query}") as resp:
        tasks = json.load(resp)["response"]
    families = [t["name"] for t in tasks.values()]
    assert families.count("BuildEvents") == N_FILES and families.count("GenerateSample") == 2
    assert all(t["progress_percentage"] in (None, 100) for t in tasks.values())
    reported = [t["status_message"] for t in tasks.values() if t["status_message"]]
    assert all(m.startswith(("BuildEvents ", "GenerateSample ")) for m in reported), reported
