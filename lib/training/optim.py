"""Optimizers and learning-rate schedulers named by the ``train`` config block."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": torch.optim.SGD, "ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}
SCHEDULERS = (None, "ExponentialLR", "CyclicLR", "OneCycle")
FUSED = ("ADAM", "ADAMW")


def make_optimizer(
    name: str, params: Iterable[Any], options: Mapping[str, Any] | None = None, where: str = "train.optimizer"
) -> Optimizer:
    """The optimizer ``name`` (SGD, ADAM or ADAMW) over ``params`` with keyword ``options``.

    ADAM and ADAMW default to torch's fused kernels (one call per step instead of a Python loop
    over the parameters); ``fused: false`` or a ``foreach`` option in ``options`` turns that off.
    """
    if not isinstance(name, str) or name.upper() not in OPTIMIZERS:
        raise ValueError(f"{where}: unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    options = dict(options or {})
    if name.upper() in FUSED and "foreach" not in options:
        options.setdefault("fused", True)
    try:
        return OPTIMIZERS[name.upper()](params, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}_params: bad options {options} for {name.upper()}: {err}") from err


def _scheduler_kwargs(name: str, optimizer: Optimizer, options: dict[str, Any], steps: int, epochs: int) -> dict:
    """Defaults of each scheduler, overridden by ``options``."""
    lr = optimizer.param_groups[0]["lr"]
    if name == "ExponentialLR":
        return {"gamma": 0.9, **options}
    if name == "CyclicLR":
        return {"base_lr": lr / 10, "max_lr": lr, "step_size_up": max(1, steps // 2),
                "cycle_momentum": False, **options}
    return {"max_lr": lr, "total_steps": steps * epochs, **options}


def make_scheduler(
    name: str | None,
    optimizer: Optimizer,
    options: Mapping[str, Any] | None = None,
    steps_per_epoch: int = 1,
    epochs: int = 1,
    where: str = "train.scheduler",
) -> LRScheduler | None:
    """The scheduler ``name`` or None; CyclicLR and OneCycle step per batch, ExponentialLR per epoch."""
    if name not in SCHEDULERS:
        raise ValueError(f"{where}: unknown scheduler {name!r}; expected one of {list(SCHEDULERS)}")
    if name is None:
        if options:
            raise ValueError(f"{where}_params: options {dict(options)} given without a scheduler")
        return None
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"{where}: steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
    kwargs = _scheduler_kwargs(name, optimizer, dict(options or {}), int(steps_per_epoch), int(epochs))
    cls = {"ExponentialLR": torch.optim.lr_scheduler.ExponentialLR, "CyclicLR": torch.optim.lr_scheduler.CyclicLR,
           "OneCycle": torch.optim.lr_scheduler.OneCycleLR}[name]
    try:
        return cls(optimizer, **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}_params: bad options {dict(options or {})} for {name}: {err}") from err


def steps_per_batch(scheduler: LRScheduler | None) -> bool:
    """True for schedulers stepped after every batch (CyclicLR, OneCycle), False for those stepped once per epoch."""
    return isinstance(scheduler, (torch.optim.lr_scheduler.CyclicLR, torch.optim.lr_scheduler.OneCycleLR))


def schedule_ended(scheduler: LRScheduler | None) -> bool:
    """Whether a OneCycle schedule has taken all its steps. A run resumed at another world size
    may take a step or two more than its schedule has (an epoch's step count depends on the world
    size); those keep the final learning rate instead of failing."""
    return isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and scheduler.last_epoch >= scheduler.total_steps


def schedule_length(scheduler: LRScheduler | None) -> dict[str, Any]:
    """The attributes that fix a OneCycle schedule's length (empty for other schedulers)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        return {"total_steps": scheduler.total_steps, "_schedule_phases": scheduler._schedule_phases}
    return {}


def keep_schedule_length(scheduler: LRScheduler, length: dict[str, Any]) -> None:
    """After loading a checkpoint, keep the schedule as long as this run's ``train.epochs`` says.

    OneCycle's state carries its total step count; resuming with more epochs (ContinueTraining)
    would otherwise step past the end of the old schedule and fail. The step count stays, so a
    resume with unchanged epochs continues exactly.
    """
    scheduler.__dict__.update(length)

