"""The DAG end to end through the tracerflow command, luigi's own command and a real luigid."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot

from tracerflow.config import load_config

from .helpers import SMALL, datasets, tracerflow

STAGE_DIRS = ("events", "graphs", "selections")
N_FILES = sum(len(load_config(None, SMALL[1::2]).sample_files(s)) for s in ("ttbar", "zprime"))


def _targets(root: Path) -> list[Path]:
    return sorted(p for d in STAGE_DIRS for p in (root / d).rglob("*.h5"))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dag")
    tracerflow("run", *SMALL, cwd=work, check=True)
    return work


@pytest.mark.slow
def test_default_config_runs_whole_dag(small_run):
    root = small_run / "tracerflow-output" / "toy-ftag"
    targets = _targets(root)
    assert N_FILES >= 4
    assert len(targets) == 3 * N_FILES
    for path in targets:
        with h5py.File(path) as f:
            assert f.attrs["complete"]
            assert len(f.attrs["config_digest"]) == 16
            assert f.attrs["schema"].startswith("tracerflow.")
            assert f.attrs["created_by"].split("(")[0] in ("BuildEvents", "BuildGraphs", "ApplySelections")
    shown = tracerflow("show", *SMALL, cwd=small_run, check=True).stdout
    assert shown.strip().endswith("tasks complete")
    done, total = shown.strip().splitlines()[-1].split()[0].split("/")
    assert done == total and int(total) == 1 + 3 * N_FILES + 2


@pytest.mark.slow
def test_rerun_is_a_no_op_and_a_changed_setting_reruns_only_its_stage(small_run):
    root = small_run / "tracerflow-output" / "toy-ftag"
    before = {p: p.stat().st_mtime_ns for p in _targets(root)}
    tracerflow("run", *SMALL, cwd=small_run, check=True)
    assert {p: p.stat().st_mtime_ns for p in _targets(root)} == before
    cut = ("--set", "selection.template.cuts.pt=jets.pt > 40")
    tracerflow("run", *SMALL, *cut, cwd=small_run, check=True)
    after = {p: p.stat().st_mtime_ns for p in _targets(root)}
    changed = {p.parent.parent.name for p in after if after[p] != before[p]}
    assert changed == {"selections"}
    tracerflow("run", *SMALL, *cut, "--set", "event.chunk_size=777", cwd=small_run, check=True)
    assert {p: p.stat().st_mtime_ns for p in _targets(root)} == after


@pytest.mark.slow
def test_two_runs_of_one_config_give_identical_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tracerflow("run", *SMALL, cwd=tmp_path / "a", check=True)
    tracerflow("run", *SMALL, "--workers", "2", cwd=tmp_path / "b", check=True)
    ours = tmp_path / "a" / "tracerflow-output" / "toy-ftag"
    theirs = tmp_path / "b" / "tracerflow-output" / "toy-ftag"
    for path in _targets(ours):
        twin = theirs / path.relative_to(ours)
        left, right = datasets(path), datasets(twin)
        assert left.keys() == right.keys()
        for key in left:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"{path}:{key}")
        with h5py.File(path) as a, h5py.File(twin) as b:
            assert dict(a.attrs) == dict(b.attrs)
        assert path.read_bytes() == twin.read_bytes(), f"{path}: same content, different bytes"
    for path in sorted((ours / "samples").rglob("*.root")):
        left = uproot.open(path)["events"].arrays(library="np")
        right = uproot.open(theirs / path.relative_to(ours))["events"].arrays(library="np")
        for key in left:
            assert all(np.array_equal(a, b) for a, b in zip(left[key], right[key])), f"{path}:{key}"
        assert path.read_bytes() == (theirs / path.relative_to(ours)).read_bytes(), path


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def luigid(tmp_path):
    """A real central scheduler on a free loopback port."""
    port = _free_port()
    exe = str(Path(sys.executable).with_name("luigid"))
    proc = subprocess.Popen([exe, "--address", "127.0.0.1", "--port", str(port), "--logdir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data=%7B%7D", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("luigid did not start")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_central_scheduler_sees_tasks_and_progress(luigid, tmp_path):
    proc = tracerflow("run", *SMALL, "--until", "BuildEvents", "--workers", "2", "--scheduler-port", str(luigid),
                      cwd=tmp_path, check=True)
    assert "tracerflow: done" in proc.stdout
    query = urllib.parse.quote(json.dumps({"status": "DONE"}))
    with urllib.request.urlopen(f"http://127.0.0.1:{luigid}/api/task_list?data={query}") as resp:
        tasks = json.load(resp)["response"]
    families = [t["name"] for t in tasks.values()]
    assert families.count("BuildEvents") == N_FILES and families.count("GenerateSample") == 2
    build = next(t for t in tasks.values() if t["name"] == "BuildEvents")
    assert build["progress_percentage"] == 100
    assert build["status_message"].startswith("BuildEvents")
