"""A rerun after the config lost a sample, a file and a split removes their outputs and says so."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tracerflow.config import default_config_path

from .helpers import output_root, tracerflow


def _write(path: Path, change) -> Path:
    data = yaml.safe_load(default_config_path().read_text())
    data["samples"]["ttbar"]["generate"].update(n_jets=2000, events_per_file=150)
    data["samples"]["zprime"]["generate"].update(n_jets=1500, events_per_file=300)
    data["resample"]["plots"] = True
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _drop_sample_and_split(data: dict) -> None:
    del data["samples"]["zprime"]
    data["resample"]["splits"] = {"train": 0.8, "val": 0.2}


def _drop_file(data: dict) -> None:
    _drop_sample_and_split(data)
    data["samples"]["ttbar"]["generate"]["n_jets"] = 1000  # ttbar_0002.root leaves the sample


def _removed(proc) -> list[str]:
    lines = [line for line in proc.stderr.splitlines() if "removed stale" in line]
    assert len(lines) == len(set(lines)), "each removal is reported once"
    return lines


@pytest.mark.slow
def test_outputs_the_config_no_longer_makes_are_removed_and_reported(tmp_path):
    before = _write(tmp_path / "before.yaml", lambda data: None)
    tracerflow("run", "--config", str(before), "--until", "WriteTrainSample", cwd=tmp_path, check=True)
    root = output_root(tmp_path)
    kinds = ("events", "graphs", "selections")
    sample = [root / kind / "zprime" for kind in kinds]
    split = [root / "resample" / "test.h5", root / "resample" / "report_test.json",
             root / "train_sample" / "test.h5", root / "train_sample" / "test_folds.h5",
             *sorted((root / "resample" / "plots").glob("resample_test_*.png"))]
    file = [root / kind / "ttbar" / "ttbar_0002.h5" for kind in kinds]
    assert all(p.exists() for p in sample + split + file) and len(split) == 6

    # ttbar's caches are complete, so no per-file task runs: the zprime caches go all the same
    after = _write(tmp_path / "after.yaml", _drop_sample_and_split)
    proc = tracerflow("run", "--config", str(after), "--until", "WriteTrainSample", cwd=tmp_path, check=True)
    assert not [p for p in sample + split if p.exists()] and all(p.exists() for p in file)
    reported = _removed(proc)
    assert len(reported) == len(sample + split)
    assert all(any(str(p) in line for line in reported) for p in sample + split)
    assert sorted(p.name for p in (root / "train_sample").glob("*.h5")) == [
        "train.h5", "train_folds.h5", "val.h5", "val_folds.h5"]

    fewer = _write(tmp_path / "fewer.yaml", _drop_file)
    proc = tracerflow("run", "--config", str(fewer), "--until", "ApplySelections", cwd=tmp_path, check=True)
    assert len(_removed(proc)) == len(file) and not [p for p in file if p.exists()]
    for kind in kinds:
        assert sorted(p.name for p in (root / kind / "ttbar").iterdir()) == ["ttbar_0000.h5", "ttbar_0001.h5"]
    again = tracerflow("run", "--config", str(fewer), "--until", "ApplySelections", cwd=tmp_path, check=True)
    assert not _removed(again)


@pytest.mark.slow
def test_a_stage_run_alone_removes_its_stale_outputs(tmp_path, shared_data):
    """Through luigi's own command (no tracerflow run before it), BuildEvents prunes as it starts."""
    config = tmp_path / "analysis.yaml"
    config.write_text(yaml.safe_dump({
        "project": {"name": "p", "output_dir": "out"},
        "samples": {"hzz": {"files": [str(shared_data / "uproot-HZZ.root")]}},
        "event": {"template": {"collections": {"jets": {"branches": {"px": "Jet_Px", "py": "Jet_Py"}}}}},
        "graph": {"template": {"nodes": "jets", "node_features": {"px": "jets.px"}}},
        "selection": {"template": {"cuts": {"one_jet": "count(jets) >= 1"}}},
    }))
    events = tmp_path / "out" / "p" / "events"
    for name in ("gone/a.h5", "hzz/old.h5"):
        (events / name).parent.mkdir(parents=True, exist_ok=True)
        (events / name).write_bytes(b"")
    luigi = [str(Path(sys.executable).with_name("luigi")), "--module", "tracerflow.workflows", "BuildEvents",
             "--sample", "hzz", "--file", "uproot-HZZ.root", "--config", str(config), "--local-scheduler"]
    proc = subprocess.run(luigi, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(events).as_posix() for p in events.rglob("*")) == ["hzz", "hzz/uproot-HZZ.h5"]
    assert str(events / "gone") in proc.stderr and str(events / "hzz" / "old.h5") in proc.stderr
