"""Callbacks: hook order, early stopping, best-model and checkpoint files, gradient clipping and CSV logs."""
from __future__ import annotations

import csv

import h5py
import pytest
import torch

from tracerflow.training import (
    HOOKS,
    Callback,
    Checkpoint,
    EarlyStopping,
    Fitter,
    GradClip,
    MetricLogger,
    SaveBest,
    TrainFileDataset,
    make_optimizer,
)

from .test_training_fit import make_model
from .test_training_data import write_toy_train_file


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = write_toy_train_file(tmp_path_factory.mktemp("cb") / "train.h5", n=1200)
    with h5py.File(path, "a") as f:
        f["jets/weight"][...] = 1.0
    train = TrainFileDataset(path, folds=[0, 1, 2], batch_size=300, seed=0, block_rows=400)
    val = TrainFileDataset(path, folds=[3], batch_size=1000, shuffle=False)
    return train, val


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattribute__(self, name):
        if name in HOOKS:
            return lambda fitter: self.calls.append(name)
        return super().__getattribute__(name)


def _fitter(callbacks, lr: float = 0.01) -> Fitter:
    model = make_model()
    return Fitter(model, optimizer=make_optimizer("SGD", model.parameters(), {"lr": lr}), callbacks=callbacks, seed=0)


def test_hooks_are_called_in_the_documented_order(data):
    train, val = data
    recorder = Recorder()
    fitter = _fitter([recorder])
    fitter.fit(train, val, epochs=1)
    fitter.predict(val)
    step = ["on_batch_begin", "on_forwards_end", "on_backwards_begin", "on_backwards_end", "on_batch_end"]
    evaluate = ["on_batch_begin", "on_forwards_end", "on_batch_end"]
    expected = (["on_train_begin", "on_epoch_begin", "on_fold_begin"] + step * len(train) + ["on_fold_end"]
                + ["on_fold_begin"] + evaluate * len(val) + ["on_fold_end", "on_epoch_end", "on_train_end"]
                + ["on_pred_begin", "on_pred_end"])
    assert recorder.calls == expected


def test_early_stopping_stops_after_patience_epochs(data, monkeypatch):
    train, val = data
    losses = iter([1.0, 0.9, 0.95, 0.9, 0.91, 0.5, 0.4])
    monkeypatch.setattr(Fitter, "validate", lambda self, d: setattr(self, "val_loss", next(losses)) or self.val_loss)
    stopper = EarlyStopping(patience=3, min_delta=0.01)
    history = _fitter([stopper]).fit(train, val, epochs=7)
    assert len(history.epochs) == 5 and history.stopped_early
    assert stopper.best == 0.9 and stopper.wait == 3
    with pytest.raises(ValueError):
        EarlyStopping(patience=0)


def test_save_best_and_checkpoint_load_with_weights_only(data, tmp_path):
    train, val = data
    fitter = _fitter([SaveBest(tmp_path / "best.pt"), Checkpoint(tmp_path / "last.pt")])
    history = fitter.fit(train, val, epochs=2)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(best) == set(fitter.model.state_dict())
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["best_loss"] == history.best_loss
    assert {"model", "optimizer", "scheduler", "rng", "callbacks", "history"} <= set(state)
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert state["callbacks"][0] == {"type": "SaveBest", "state": {"best": history.best_loss}}
    if history.best_epoch == 1:
        assert all(torch.equal(best[k], v) for k, v in fitter.model.state_dict().items())


class NormProbe(Callback):
    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_backwards_end(self, fitter):
        grads = [p.grad for p in fitter.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))


def test_grad_clip_bounds_the_gradient_norm(data):
    train, val = data
    free, clipped = NormProbe(), NormProbe()
    _fitter([free], lr=0.0).fit(train, val, epochs=1)
    _fitter([GradClip(0.05), clipped], lr=0.0).fit(train, val, epochs=1)
    assert max(free.norms) > 0.05
    assert max(clipped.norms) <= 0.05 * (1 + 1e-5)


def test_metric_logger_writes_iteration_and_epoch_csvs(data, tmp_path):
    train, val = data
    _fitter([MetricLogger(tmp_path / "logs")]).fit(train, val, epochs=2)
    with open(tmp_path / "logs" / "iterations.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["iteration", "epoch", "loss", "lr"]
    assert len(rows) == 2 * len(train)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 2 * len(train) + 1))
    with open(tmp_path / "logs" / "epochs.csv") as f:
        epochs = list(csv.DictReader(f))
    assert list(epochs[0]) == ["epoch", "train_loss", "val_loss", "val_accuracy"]
    assert [int(r["epoch"]) for r in epochs] == [0, 1]
    with open(tmp_path / "logs" / "epochs.timings.csv") as f:
        timings = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in timings] == [0, 1] and all(float(r["time"]) > 0 for r in timings)
    with open(tmp_path / "logs" / "iterations.timings.csv") as f:
        assert list(next(csv.DictReader(f))) == ["iteration", "time", "memory"]


def test_metric_logger_writes_tensorboard_scalars(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, val = data
    _fitter([MetricLogger(tmp_path / "logs", tensorboard=True)]).fit(train, val, epochs=2)
    events = EventAccumulator(str(tmp_path / "logs" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("epoch/val_loss")] == [0, 1]
    assert len(events.Scalars("loss/iteration")) == 2 * len(train)




def _logged_fitter(directory) -> Fitter:
    return _fitter([SaveBest(directory / "best.pt"), MetricLogger(directory), Checkpoint(directory / "last.pt")])


def _first_column(path) -> list[int]:
    with open(path, newline="") as f:
        return [int(row[0]) for row in list(csv.reader(f))[1:]]


def test_a_resumed_run_drops_what_a_killed_run_logged_after_its_last_checkpoint(data, tmp_path):
    train, val = data
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _logged_fitter(whole).fit(train, val, epochs=3)
    _logged_fitter(resumed).fit(train, val, epochs=1)
    first = (resumed / "last.pt").read_bytes()
    _logged_fitter(resumed).fit(train, val, epochs=2, resume_from=resumed / "last.pt")
    # killed after epoch 1 was logged but before its checkpoint was written, with a row half written
    (resumed / "last.pt").write_bytes(first)
    with open(resumed / "iterations.csv", "a") as f:
        f.write("1")
    _logged_fitter(resumed).fit(train, val, epochs=3, resume_from=resumed / "last.pt")
    for name in ("iterations.csv", "epochs.csv"):
        assert (resumed / name).read_text() == (whole / name).read_text(), name
    for name in ("iterations.timings.csv", "epochs.timings.csv"):
        assert _first_column(resumed / name) == _first_column(whole / name), name
    assert not [p.name for p in resumed.iterdir() if ".tmp-" in p.name]
