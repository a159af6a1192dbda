"""Fitter: learning, weighted losses, evaluation without gradients, prediction and exact resumption."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from tracerflow.models import ModelBuilder
from tracerflow.training import (
    Checkpoint,
    Fitter,
    TrainFileDataset,
    fit,
    make_optimizer,
    make_scheduler,
    per_sample_loss,
    predict,
    weighted_loss,
)

from .test_training_data import N_JET_VARS, N_TRACK_VARS, write_toy_train_file

CONFIG = {
    "body": {"widths": [16, 16], "dropout": 0.1},
    "tail": {"objective": "multiclass", "n_out": 3},
    "set": {"type": "deepsets", "phi_widths": [8], "rho_widths": [8]},
}


def make_model(seed: int = 0) -> torch.nn.Module:
    return ModelBuilder(CONFIG, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=seed)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    path = write_toy_train_file(tmp_path_factory.mktemp("fit") / "train.h5")
    with h5py.File(path, "a") as f:
        f["jets/weight"][...] = 1.0
    return path


def datasets(path, batch_size: int = 128):
    train = TrainFileDataset(path, folds=[0, 1, 2], batch_size=batch_size, seed=7, block_rows=512)
    val = TrainFileDataset(path, folds=[3], batch_size=512, shuffle=False)
    return train, val


def test_training_reduces_the_validation_loss(train_file):
    model = make_model()
    train, val = datasets(train_file)
    before = Fitter(model).validate(val)
    history = fit(model, train, val, epochs=3, optimizer=make_optimizer("ADAM", model.parameters(), {"lr": 0.01}),
                  seed=0)
    assert len(history.epochs) == 3
    assert history.val_loss[-1] < 0.8 * before
    assert history.epochs[-1]["val_accuracy"] > 0.6
    probs = predict(model, val)
    assert probs.shape == (val.n_rows, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_zero_weights_remove_a_class_from_the_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(12, 3), torch.arange(12) % 3
    weight = (target != 2).float()
    loss = weighted_loss("multiclass", logits, target, weight)
    keep = target != 2
    assert torch.allclose(loss, per_sample_loss("multiclass", logits[keep], target[keep]).mean())
    assert not torch.allclose(loss, weighted_loss("multiclass", logits, target, torch.ones(12)))
    assert weighted_loss("multiclass", logits, target, torch.zeros(12)).item() == 0.0


def test_binary_and_regression_losses():
    logits = torch.tensor([[2.0], [-1.0]])
    target = torch.tensor([1, 0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1), target.float())
    assert torch.allclose(weighted_loss("binary", logits, target, torch.ones(2)), expected)
    values, truth = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(weighted_loss("regression", values, truth, torch.tensor([1.0, 0.0])), torch.tensor(2.5))


def test_validation_leaves_gradients_alone_and_uses_eval_mode(train_file):
    model = make_model()
    _, val = datasets(train_file)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    Fitter(model).validate(val)
    assert seen and all(state == (False, False) for state in seen)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


def _run(train_file, tmp_path, epochs: int, resume: bool = False):
    model = make_model(seed=1 if resume else 0)
    train, val = datasets(train_file)
    opt = make_optimizer("ADAMW", model.parameters(), {"lr": 0.005})
    sched = make_scheduler("OneCycle", opt, {}, steps_per_epoch=len(train), epochs=4)
    fitter = Fitter(model, optimizer=opt, scheduler=sched, callbacks=[Checkpoint(tmp_path / "last.pt")], seed=5)
    history = fitter.fit(train, val, epochs, resume_from=tmp_path / "last.pt" if resume else None)
    return model, history, torch.randn(4)


def test_two_epochs_then_resuming_two_equals_four_straight(train_file, tmp_path):
    straight, h_straight, rng_straight = _run(train_file, tmp_path / "a", 4)
    _run(train_file, tmp_path / "b", 2)
    resumed, h_resumed, rng_resumed = _run(train_file, tmp_path / "b", 4, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["val_loss"] for r in h_straight.epochs] == [r["val_loss"] for r in h_resumed.epochs]
    assert torch.equal(rng_straight, rng_resumed)


def test_resume_refuses_a_checkpoint_with_another_scheduler(train_file, tmp_path):
    _run(train_file, tmp_path, 1)
    model = make_model()
    train, val = datasets(train_file)
    fitter = Fitter(model, optimizer=make_optimizer("ADAMW", model.parameters()), seed=5)
    with pytest.raises(ValueError, match="scheduler"):
        fitter.fit(train, val, 2, resume_from=tmp_path / "last.pt")


def test_resuming_with_more_epochs_stretches_the_one_cycle_schedule(train_file, tmp_path):
    def fitter_for(epochs: int) -> tuple[Fitter, object, object]:
        model = make_model()
        train, val = datasets(train_file)
        opt = make_optimizer("ADAMW", model.parameters(), {"lr": 0.005})
        sched = make_scheduler("OneCycle", opt, {}, steps_per_epoch=len(train), epochs=epochs)
        return Fitter(model, optimizer=opt, scheduler=sched, callbacks=[Checkpoint(tmp_path / "last.pt")], seed=5), train, val

    first, train, val = fitter_for(1)
    first.fit(train, val, 1)
    longer, train, val = fitter_for(3)
    history = longer.fit(train, val, 3, resume_from=tmp_path / "last.pt")
    assert [r["epoch"] for r in history.epochs] == [0, 1, 2]
    assert longer.scheduler.total_steps == 3 * len(train)
    assert longer.scheduler.last_epoch == 3 * len(train)
