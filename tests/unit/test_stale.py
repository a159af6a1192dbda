"""Outputs of samples, files, splits and folds the config no longer has are removed, and only those."""
from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from tracerflow.config import load_config
from tracerflow.io.stale import remove_stale, remove_stale_outputs


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
