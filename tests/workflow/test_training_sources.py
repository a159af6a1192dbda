"""TrainFold fed from the TFRecords with SortByNodes batching, and the config checks of train.data and train.tensorboard."""
from __future__ import annotations

import csv
import importlib.util
import math

import pytest

from tracerflow.io.model_file import load_model
from tracerflow.workflows import cli

from .helpers import SMALL, config_error, output_root, tracerflow

TFRECORDS = ("--set", "train.data=tfrecords", "--set", "train.sort_by_nodes=true", "--set", "train.folds=[0]",
             "--set", "train.epochs=6", "--set", "train.batch_size=256")


@pytest.mark.slow
def test_a_fold_trains_from_the_tfrecords_and_beats_chance(tmp_path):
    tracerflow("run", *SMALL, *TFRECORDS, "--until", "TrainFold", cwd=tmp_path, check=True)
    root = output_root(tmp_path)
    assert (root / "tfrecords" / "train" / "metadata.json").is_file()
    _, attrs = load_model(root / "train" / "fold_0" / "model.h5")
    assert attrs["complete"] and attrs["epochs_run"] >= 4
    with open(root / "train" / "fold_0" / "epochs.csv", newline="") as fh:
        epochs = list(csv.DictReader(fh))
    assert attrs["best_loss"] < math.log(3) and float(epochs[attrs["best_epoch"]]["val_accuracy"]) > 0.4
    assert not (root / "train" / "fold_1").exists()


@pytest.mark.parametrize("override,says", [
    ("tfrecords=null", "needs a tfrecords block"),
    ("tfrecords.splits=[val]", "has: val"),
])
def test_tfrecords_data_needs_the_train_split_converted(override, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--set", "train.data=tfrecords", "--set", override]) == 2
    source = f"<embedded default> (with --set train.data=tfrecords {override})"
    key, message = config_error(capsys.readouterr().err, source)
    assert key == "train.data" and says in message
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_without_the_package_fails_on_its_key(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--set", "train.tensorboard=true"]) == 2
    key, message = config_error(capsys.readouterr().err, "<embedded default> (with --set train.tensorboard=true)")
    assert key == "train.tensorboard" and "tensorboard" in message
    assert list(tmp_path.iterdir()) == []
