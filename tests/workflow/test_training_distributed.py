"""TrainFold with train.distributed through the tracerflow command: two processes spawned by the task,
a rerun that trains nothing, a continuation at world size 1, and ranks started by torchrun."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from .conftest import free_port
from .helpers import SMALL, file_mtimes, output_root, tracerflow

ONE_FOLD = ("--set", "train.folds=[1]", "--until", "TrainFold")
TWO = ("--set", "train.distributed.world_size=2")


def epochs_csv(root: Path) -> list[str]:
    return (root / "train" / "fold_1" / "epochs.csv").read_text().splitlines()


@pytest.mark.slow
def test_two_spawned_processes_train_a_fold_that_one_process_continues(tmp_path):
    proc = tracerflow("run", *SMALL, "--set", "train.epochs=1", "--set", "scheduler.progress_interval=0.5", *TWO,
                      *ONE_FOLD, cwd=tmp_path, check=True)
    assert "done" in proc.stdout
    assert "TrainFold 1: epoch 1 of 1 done: train loss" in proc.stderr  # rank 0's progress, through the task
    root = output_root(tmp_path)
    first = epochs_csv(root)
    assert len(first) == 2 and first[0].startswith("epoch,train_loss,val_loss")
    with h5py.File(root / "train" / "fold_1" / "model.h5") as f:
        assert f.attrs["complete"] and f.attrs["epochs_run"] == 1
        two_digest = f.attrs["config_digest"]
    before = file_mtimes(root)
    tracerflow("run", *SMALL, "--set", "train.epochs=1", *TWO, *ONE_FOLD, cwd=tmp_path, check=True)
    assert file_mtimes(root) == before  # done is done
    tracerflow("run", *SMALL, "--set", "train.epochs=2", "--set", "train.continue_training=true", *ONE_FOLD,
               cwd=tmp_path, check=True)
    resumed = epochs_csv(root)
    assert resumed[:2] == first and len(resumed) == 3
    with h5py.File(root / "train" / "fold_1" / "model.h5") as f:
        assert f.attrs["complete"] and f.attrs["epochs_run"] == 2 and f.attrs["config_digest"] != two_digest


@pytest.mark.slow
def test_under_torchrun_every_rank_runs_the_task_and_rank_0_writes(tmp_path):
    tracerflow("run", *SMALL, "--until", "WriteTrainSample", cwd=tmp_path, check=True)
    script = Path(sys.executable).with_name("tracerflow")
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), str(script), "run", *SMALL, "--set", "train.epochs=1", *TWO, *ONE_FOLD]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = output_root(tmp_path)
    assert len(epochs_csv(root)) == 2
    with h5py.File(root / "train" / "fold_1" / "model.h5") as f:
        assert f.attrs["complete"] and f.attrs["epochs_run"] == 1
