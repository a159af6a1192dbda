"""Outputs of samples, files, splits and folds the config no longer has are removed, and only those;
what a killed run's writers left is removed when its task runs again, and only that."""
from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tracerflow.config import load_config
from tracerflow.io.atomic import replacing, temporary_of, temporary_path, write_atomic
from tracerflow.io.h5target import H5Writer
from tracerflow.io.stale import own_outputs, remove_interrupted_writes, remove_stale, remove_stale_outputs
from tracerflow.resample import gather
from tracerflow.toy import sample as toy_sample
from tracerflow.training.callbacks import Checkpoint, SaveBest


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_remove_stale_keeps_what_is_kept_and_the_directories_holding_it(tmp_path, caplog):
    dead = _dead_pid()
    _touch(tmp_path, "a/x.h5", "a/sub/y.h5", "a/old.h5", "b/z.h5", "notes.txt",
           f"a/.old.h5.tmp-{dead}", f"a/.old.h5.tmp-{os.getpid()}", f"a/.x.h5.tmp-{dead}")
    (tmp_path / "a" / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="tracerflow.stale"):
        removed = remove_stale(tmp_path, {"a/x.h5", "a/sub/y.h5"}, ["**/*.h5"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == ["a/old.h5", "b/z.h5"]
    # the dead writer's temporary file of a removed target goes; a running one's and a kept target's stay
    assert _files(tmp_path) == {"a/x.h5", "a/sub/y.h5", "notes.txt", f"a/.old.h5.tmp-{os.getpid()}",
                                f"a/.x.h5.tmp-{dead}"}
    assert not (tmp_path / "b").exists() and (tmp_path / "a" / "empty").is_dir()
    assert len(caplog.records) == 2 and all("removed stale" in r.getMessage() for r in caplog.records)
    assert remove_stale(tmp_path, {"a/x.h5", "a/sub/y.h5"}, ["**/*.h5"]) == []
    assert remove_stale(tmp_path / "missing", set(), ["*"]) == []


def _config(tmp_path: Path, *overrides: str):
    return load_config(None, (f"project.output_dir={tmp_path}", "project.name=p", *overrides))


def test_per_file_caches_of_gone_samples_and_files(tmp_path):
    cfg = _config(tmp_path, "samples.ttbar.generate.n_jets=3000", "samples.ttbar.generate.events_per_file=500",
                  "samples.zprime.generate.n_jets=1000", "samples.zprime.generate.events_per_file=500")
    ttbar = [f.logical for f in cfg.sample_files("ttbar")]
    root = cfg.output_root
    for kind in ("events", "graphs", "selections"):
        _touch(root / kind, *[f"ttbar/{name[:-5]}.h5" for name in ttbar], "ttbar/ttbar_9999.h5",
               "zprime/zprime_0000.h5", "gone/gone_0000.h5", "gone/sub/gone_0001.h5")
    removed = remove_stale_outputs(cfg, "BuildGraphs")
    assert sorted(p.relative_to(root).as_posix() for p in removed) == ["graphs/gone", "graphs/ttbar/ttbar_9999.h5"]
    assert _files(root / "graphs") == {f"ttbar/{name[:-5]}.h5" for name in ttbar} | {"zprime/zprime_0000.h5"}
    assert "gone/gone_0000.h5" in _files(root / "events")  # other stages prune their own folders
    remove_stale_outputs(cfg, "BuildEvents")
    remove_stale_outputs(cfg, "ApplySelections")
    assert _files(root / "events") == _files(root / "graphs") == _files(root / "selections")


def test_splits_folds_and_predict_samples(tmp_path):
    cfg = _config(tmp_path, "resample.splits={train: 0.8, val: 0.2}", "tfrecords.splits=[train]",
                  "train.folds=[0, 2]", "samples.extra.generate={process: ttbar, n_jets: 100}",
                  "predict.samples=[extra]")
    root = cfg.output_root
    _touch(root, "resample/train.h5", "resample/val.h5", "resample/test.h5", "resample/report_train.json",
           "resample/report_test.json", "resample/plots/resample_train_pt.png", "resample/plots/resample_test_pt.png",
           "resample/plots/resample_train_mass.png",
           "train_sample/train.h5", "train_sample/train_folds.h5", "train_sample/test.h5",
           "train_sample/test_folds.h5", "train_sample/scale_dict.json",
           "tfrecords/train/metadata.json", "tfrecords/val/metadata.json", "tfrecords/val/shard_00000.tfrecord",
           "train/fold_0/model.h5", "train/fold_1/model.h5", "train/fold_2/model.h5", "train/fold_4/best.pt",
           "predict_samples/extra.h5", "predict_samples/extra_jets.h5", "predict_samples/old.h5",
           "predict_samples/old_jets.h5")
    for stage in ("Resample", "WriteTrainSample", "ConvertTFRecords", "TrainFold", "PrepareSample", "Predict"):
        remove_stale_outputs(cfg, stage)
    assert _files(root) == {
        "resample/train.h5", "resample/val.h5", "resample/report_train.json", "resample/plots/resample_train_pt.png",
        "train_sample/train.h5", "train_sample/train_folds.h5", "train_sample/scale_dict.json",
        "tfrecords/train/metadata.json", "train/fold_0/model.h5", "train/fold_2/model.h5",
        "predict_samples/extra.h5", "predict_samples/extra_jets.h5"}



def test_temporary_names_carry_the_final_name_and_the_writing_process(tmp_path):
    mine = os.getpid()
    assert temporary_path(tmp_path / "a.h5") == tmp_path / f".a.h5.tmp-{mine}"
    assert temporary_path(tmp_path / "a.h5", thread=True) == tmp_path / f".a.h5.tmp-{mine}-{threading.get_ident()}"
    for path in (temporary_path(tmp_path / "a.h5"), temporary_path(tmp_path / "a.h5", thread=True)):
        assert temporary_of(path.name) == ("a.h5", mine)
    assert temporary_of(".shard_00000.tfrecord.tmp-30467") == ("shard_00000.tfrecord", 30467)
    for name in ("a.h5", ".a.h5", ".a.h5.tmp", ".a.h5.tmp-", ".a.h5.tmp-12x", "a.h5.tmp-12", ".a.h5.tmp-1-2-3"):
        assert temporary_of(name) is None, name


def test_replacing_leaves_the_earlier_file_when_the_write_fails(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_atomic(path, "one\n")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "one\n" and sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_every_writer_names_its_temporary_files_so(tmp_path, monkeypatch):
    """H5 targets, checkpoints, best weights, the toy's ROOT files and Resample's scratch arrays."""
    seen: list[tuple[str, Path]] = []
    with H5Writer(tmp_path / "t.h5", "s", 1, "d", "test") as writer:
        writer.append("x", np.zeros(3))
        seen.append(("t.h5", writer.tmp_path))
        assert writer.tmp_path.exists()
    saved: list[Path] = []
    monkeypatch.setattr(torch, "save", lambda obj, file: (saved.append(Path(file.name)), file.write(b"x")))

    class Fitter:
        val_loss = 1.0
        model = torch.nn.Linear(1, 1)

        def state_dict(self):
            return {}

    SaveBest(tmp_path / "best.pt").on_epoch_end(Fitter())
    Checkpoint(tmp_path / "last.pt").on_epoch_end(Fitter())
    seen += [("best.pt", saved[0]), ("last.pt", saved[1])]
    with gather._scratch_directory(tmp_path / "train.h5") as scratch:
        seen.append(("train.h5", scratch))
        assert scratch.is_dir()
    assert not scratch.exists()

    def recreate(path, **kwargs):
        seen.append(("toy_0000.root", Path(path).parent))
        raise RuntimeError("killed")

    monkeypatch.setattr(toy_sample.uproot, "recreate", recreate)
    plan = toy_sample.plan_files("ttbar", 10, 10, 1, "toy")[0]
    with pytest.raises(RuntimeError):
        toy_sample.generate_file("ttbar", plan, 1, "toy", tmp_path)
    assert plan.name == "toy_0000.root"
    for name, path in seen:
        assert temporary_of(path.name) == (name, os.getpid()), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt", "t.h5"]


def test_interrupted_writes_of_own_targets_and_below_own_directories_go_when_their_writer_is_gone(tmp_path, caplog):
    dead, alive = _dead_pid(), os.getpid()
    _touch(tmp_path, "events/a.h5", f"events/.a.h5.tmp-{dead}", f"events/.a.h5.tmp-{dead}-77/a.root",
           f"events/.a.h5.tmp-{alive}", f"events/.b.h5.tmp-{dead}", f"events/.a.h5.tmp-{dead}.bak",
           f"fold/.last.pt.tmp-{dead}", f"fold/plots/.roc.png.tmp-{dead}", f"fold/.scratch.tmp-{dead}-1/x.bin",
           f"fold/.scratch.tmp-{dead}-1/.y.tmp-{dead}", "fold/model.h5", f"fold/.model.h5.tmp-{alive}",
           f"other/.z.h5.tmp-{dead}")
    with caplog.at_level(logging.INFO, logger="tracerflow.stale"):
        removed = remove_interrupted_writes([tmp_path / "events" / "a.h5", tmp_path / "events" / "gone.h5"],
                                            [tmp_path / "fold", tmp_path / "missing"])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        f"events/.a.h5.tmp-{dead}", f"events/.a.h5.tmp-{dead}-77", f"fold/.last.pt.tmp-{dead}",
        f"fold/.scratch.tmp-{dead}-1", f"fold/plots/.roc.png.tmp-{dead}"]
    # a running writer's, another target's and other directories' temporary files stay, as does every other file
    assert _files(tmp_path) == {"events/a.h5", f"events/.a.h5.tmp-{alive}", f"events/.b.h5.tmp-{dead}",
                                f"events/.a.h5.tmp-{dead}.bak", "fold/model.h5", f"fold/.model.h5.tmp-{alive}",
                                f"other/.z.h5.tmp-{dead}"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5 and all("interrupted write" in m and str(dead) in m for m in messages)
    assert remove_interrupted_writes([tmp_path / "events" / "a.h5"], [tmp_path / "fold"]) == []


def test_each_task_owns_its_targets_and_its_directories(tmp_path):
    cfg = _config(tmp_path, "samples.ttbar.generate.n_jets=1000", "samples.ttbar.generate.events_per_file=500",
                  "resample.variables={pt: [[20, 250, 5]]}")
    root = cfg.output_root
    rel = lambda paths: sorted(p.relative_to(root).as_posix() for p in paths)  # noqa: E731
    files, dirs = own_outputs(cfg, "GenerateSample", {"sample": "ttbar"})
    assert files == [] and dirs == [cfg.sample_dir("ttbar")]
    for stage, kind in (("BuildEvents", "events"), ("BuildGraphs", "graphs"), ("ApplySelections", "selections")):
        files, dirs = own_outputs(cfg, stage, {"sample": "ttbar", "file": "ttbar_0001.root"})
        assert rel(files) == [f"{kind}/ttbar/ttbar_0001.h5"] and dirs == []
    assert rel(own_outputs(cfg, "Resample", {"split": "val"})[0]) == [
        "resample/plots/resample_val_pt.png", "resample/report_val.json", "resample/val.h5"]
    assert rel(own_outputs(cfg, "WriteTrainSample", {"split": "val"})[0]) == [
        "train_sample/scale_dict.json", "train_sample/val.h5", "train_sample/val_folds.h5"]
    assert rel(own_outputs(cfg, "PrepareSample", {"sample": "extra"})[0]) == [
        "predict_samples/extra.h5", "predict_samples/extra_jets.h5"]
    assert rel(own_outputs(cfg, "ConvertTFRecords", {"split": "train"})[1]) == ["tfrecords/train"]
    assert rel(own_outputs(cfg, "TrainFold", {"fold": 3})[1]) == ["train/fold_3"]
    assert rel(own_outputs(cfg, "Predict", {})[1]) == ["predict"]
    assert rel(own_outputs(cfg, "TrainFold", {"fold": 3}, "d1g35t")[0]) == [".provenance/d1g35t.json"]
    # a file task's own temporary files go; a sibling file task's stay (it may be writing)
    dead = _dead_pid()
    _touch(root / "events" / "ttbar", f".ttbar_0001.h5.tmp-{dead}", f".ttbar_0000.h5.tmp-{dead}")
    remove_interrupted_writes(*own_outputs(cfg, "BuildEvents", {"sample": "ttbar", "file": "ttbar_0001.root"}))
    assert _files(root / "events") == {f"ttbar/.ttbar_0000.h5.tmp-{dead}"}
