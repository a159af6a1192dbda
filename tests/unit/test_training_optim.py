"""make_optimizer and make_scheduler: names, defaults, errors naming the config key."""
from __future__ import annotations

import pytest
import torch

from tracerflow.training import make_optimizer, make_scheduler, steps_per_batch


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    "name,cls", [("SGD", torch.optim.SGD), ("ADAM", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_optimizers_by_name(name, cls):
    opt = make_optimizer(name, _params(), {"lr": 0.01})
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.01


def test_optimizer_errors_name_the_key():
    with pytest.raises(ValueError, match=r"train\.optimizer: unknown optimizer 'RMSPROP'"):
        make_optimizer("RMSPROP", _params())
    with pytest.raises(ValueError, match=r"train\.optimizer_params"):
        make_optimizer("ADAM", _params(), {"lr": 0.01, "bogus": 1})


@pytest.mark.parametrize("name,per_batch", [("ExponentialLR", False), ("CyclicLR", True), ("OneCycle", True)])
def test_schedulers_by_name(name, per_batch):
    opt = make_optimizer("SGD", _params(), {"lr": 0.1})
    sched = make_scheduler(name, opt, {}, steps_per_epoch=10, epochs=3)
    assert steps_per_batch(sched) is per_batch
    lrs = []
    for _ in range(30 if per_batch else 3):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert len(set(lrs)) > 1


def test_no_scheduler_and_scheduler_errors_name_the_key():
    opt = make_optimizer("SGD", _params(), {"lr": 0.1})
    assert make_scheduler(None, opt) is None
    assert not steps_per_batch(None)
    with pytest.raises(ValueError, match=r"train\.scheduler: unknown scheduler 'StepLR'"):
        make_scheduler("StepLR", opt)
    with pytest.raises(ValueError, match=r"train\.scheduler_params"):
        make_scheduler("ExponentialLR", opt, {"gama": 0.5})
    with pytest.raises(ValueError, match=r"train\.scheduler_params"):
        make_scheduler(None, opt, {"gamma": 0.5})
