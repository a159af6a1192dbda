"""Train, validate and predict with a model over batched data, with callbacks and exact resumption from checkpoints.

With ``ranks`` (:class:`~tracerflow.training.distributed.Ranks`) the Fitter is one rank of a
DistributedDataParallel training: each rank's data is its share of every global batch, the
weighted loss of a step is that of the global batch (each rank's sum of weight x loss over the
global sum of weights, which every rank learns in one exchange per step, so the averaged
gradients are the global batch's), the validation sums are added over ranks, and only rank 0
writes (``fitter.is_main``). The model the callbacks and checkpoints see is the plain module,
so a checkpoint does not depend on the world size.
"""
from __future__ import annotations

import itertools
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from tracerflow.models.device import pin_reproducible, resolve_device
from tracerflow.seeding import derive_seed
from tracerflow.training.callbacks import Callback
from tracerflow.training.optim import keep_schedule_length, schedule_ended, schedule_length, steps_per_batch

if TYPE_CHECKING:
    from tracerflow.training.distributed import Ranks

Batch = Mapping[str, Tensor]
LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]
OBJECTIVES = ("binary", "multiclass", "regression")
CHECKPOINT_VERSION = 1


def per_sample_loss(objective: str, logits: Tensor, target: Tensor) -> Tensor:
    """Unreduced loss per jet: cross-entropy (multiclass), BCE with logits (binary) or mean MSE (regression)."""
    if objective == "multiclass":
        return nn.functional.cross_entropy(logits, target.long(), reduction="none")
    if objective == "binary":
        return nn.functional.binary_cross_entropy_with_logits(
            logits.reshape(-1), target.reshape(-1).to(logits.dtype), reduction="none"
        )
    if objective == "regression":
        target = target.to(logits.dtype).reshape(logits.shape[0], -1)
        return nn.functional.mse_loss(logits, target.expand_as(logits), reduction="none").mean(dim=1)
    raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")


def weighted_loss(objective: str, logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean of :func:`per_sample_loss`: sum(w * l) / sum(w), 0 where every weight is 0."""
    losses = per_sample_loss(objective, logits, target)
    total = weight.sum()
    return (weight * losses).sum() / torch.where(total == 0, torch.ones_like(total), total)


def outputs_from_logits(objective: str, logits: Tensor) -> Tensor:
    """Softmax (multiclass), sigmoid (binary) or the raw values (regression)."""
    if objective == "multiclass":
        return torch.softmax(logits, dim=1)
    if objective == "binary":
        return torch.sigmoid(logits)
    return logits


def _objective_of(model: nn.Module) -> str:
    tail = getattr(model, "tail", None)
    return getattr(tail, "objective", "multiclass")


def get_rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states as tensors and plain types (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(x) for x in py_state], "gauss_next": gauss_next},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global and python's RNGs, so dropout and any global draws repeat."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@dataclass
class History:
    """One record per finished epoch (epoch, train_loss, val_loss, metrics, time) and the best validation loss."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1
    stopped_early: bool = False

    @property
    def train_loss(self) -> list[float]:
        return [r["train_loss"] for r in self.epochs]

    @property
    def val_loss(self) -> list[float]:
        return [r["val_loss"] for r in self.epochs]

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(r) for r in self.epochs], "best_loss": self.best_loss,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "History":
        return cls([dict(r) for r in state["epochs"]], float(state["best_loss"]), int(state["best_epoch"]),
                   bool(state["stopped_early"]))


class Fitter:
    """The training loop and the state the callbacks read: model, optimizer, epoch, batch, loss, history."""

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str | LossFn | None = None,
        optimizer: Optimizer | None = None,
        scheduler: LRScheduler | None = None,
        callbacks: Sequence[Callback] = (),
        device: str | torch.device = "cpu",
        seed: int | None = None,
        ranks: "Ranks | None" = None,
    ) -> None:
        self.device = resolve_device(device)
        pin_reproducible(self.device)
        self.model = model.to(self.device)
        self.objective = loss if isinstance(loss, str) else _objective_of(model)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown loss {self.objective!r}; expected one of {OBJECTIVES} or a callable")
        if ranks is not None and callable(loss):
            raise ValueError("a distributed training takes the loss by objective name, not a callable")
        self.ranks = ranks
        self.is_main = ranks is None or ranks.is_main  # the process that writes files and reports
        self._ddp: nn.Module | None = None
        if ranks is not None:
            from torch.nn.parallel import DistributedDataParallel

            on_cuda = self.device.type == "cuda"
            self._ddp = DistributedDataParallel(self.model, device_ids=[self.device] if on_cuda else None)
        self._global: tuple[float, float] | None = None  # (loss, weight) of the global batch of this step
        self.loss_fn: LossFn = loss if callable(loss) else (lambda z, y, w: weighted_loss(self.objective, z, y, w))
        self.optimizer, self.scheduler = optimizer, scheduler
        self._schedule_length = schedule_length(scheduler)
        self.callbacks = list(callbacks)
        self.seed = seed
        self.history = History()
        self.epoch = self.start_epoch = self.n_epochs = self.iteration = 0
        self.training = False
        self.stop = False
        self.batch: Batch = {}
        self.logits: Tensor | None = None
        self.loss: Tensor | None = None
        self.train_loss = self.val_loss = math.nan
        self.metrics: dict[str, float] = {}
        self.epoch_seconds: list[float] = []  # wall time of each epoch this process ran: volatile, never in a checkpoint

    def _call(self, hook: str) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self)

    def _forward(self, batch: Batch) -> Tensor:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.batch = batch
        model = self._ddp if self._ddp is not None and self.training else self.model
        return model(batch["jets"], batch.get("tracks"), batch.get("valid"))

    def _pass(self, data: Iterable[Batch], train: bool) -> tuple[float, dict[str, float]]:
        """One fold: every batch of ``data``; returns the weighted mean loss and metrics."""
        self.training = train
        self.model.train(train)
        if self._ddp is not None:
            self._ddp.train(train)
        sums = {"loss": 0.0, "weight": 0.0, "correct": 0.0, "scored": 0.0}
        if self.ranks is not None and not train:
            self.ranks.broadcast_buffers(self.model)  # every rank validates the model rank 0 saves
        if self.ranks is not None and train and hasattr(data, "__len__"):
            # every rank takes the same number of steps: loader workers each end on a short batch,
            # so a rank with workers may have a batch or two more than len() says; those are left out
            data = itertools.islice(data, len(data))
        self._call("on_fold_begin")
        with torch.set_grad_enabled(train):
            for batch in data:
                self._call("on_batch_begin")
                self.logits = self._forward(batch)
                if self.ranks is not None and train:
                    self.loss = self._global_batch_loss()
                else:
                    self.loss = self.loss_fn(self.logits, self.batch["label"], self.batch["weight"])
                self._call("on_forwards_end")
                if train:
                    self._step()
                self._accumulate(sums)
                self._call("on_batch_end")
        self._global = None
        self._call("on_fold_end")
        if self.ranks is not None:
            sums = self._summed_over_ranks(sums, train)
        mean = sums["loss"] / sums["weight"] if sums["weight"] else math.nan
        metrics = {}
        if self.objective != "regression" and sums["weight"]:
            metrics["accuracy"] = sums["correct"] / (sums["scored"] if self.ranks is not None else sums["weight"])
        return mean, metrics

    def _global_batch_loss(self) -> Tensor:
        """This rank's part of the global batch's weighted mean loss, scaled so that DDP's average
        of the ranks' gradients is the global batch's: ``world_size * sum_rank(w l) / sum_all(w)``.
        The global batch's loss and weight are kept for :meth:`batch_loss`."""
        losses = per_sample_loss(self.objective, self.logits, self.batch["label"])
        weight = self.batch["weight"]
        local = (weight * losses).sum()
        total_loss, total_weight = self.ranks.sum([float(local.detach()), float(weight.detach().sum())])
        scale = total_weight if total_weight != 0 else 1.0
        self._global = (total_loss / scale, total_weight)
        return local * (self.ranks.world_size / scale)

    def _summed_over_ranks(self, sums: dict[str, float], train: bool) -> dict[str, float]:
        """``sums`` of a pass over every rank's share: a training pass's loss and weight are already
        the global batches'; its accuracy counts, and all of a validation pass, are added."""
        keys = ["correct", "scored"] if train else ["loss", "weight", "correct", "scored"]
        return {**sums, **dict(zip(keys, self.ranks.sum([sums[k] for k in keys])))}

    def batch_loss(self) -> tuple[float, float]:
        """The loss of the batch just run and its total weight: of the global batch (every rank's
        share) in a distributed training step, else of this process's batch."""
        if self._global is not None:
            return self._global
        return float(self.loss.detach()), float(self.batch["weight"].detach().sum())

    def _step(self) -> None:
        """Backward pass, optimizer step and per-batch scheduler step."""
        self.optimizer.zero_grad(set_to_none=True)
        self._call("on_backwards_begin")
        self.loss.backward()
        self._call("on_backwards_end")
        self.optimizer.step()
        if self.scheduler is not None and steps_per_batch(self.scheduler) and not schedule_ended(self.scheduler):
            self.scheduler.step()
        self.iteration += 1

    def _accumulate(self, sums: dict[str, float]) -> None:
        weight = self.batch["weight"].detach()
        loss, total = self.batch_loss()
        sums["loss"] += loss * total
        sums["weight"] += total
        sums["scored"] += float(weight.sum()) if self._global is not None else total
        if self.objective == "multiclass":
            hit = self.logits.detach().argmax(dim=1) == self.batch["label"]
        elif self.objective == "binary":
            hit = (self.logits.detach().reshape(-1) > 0) == (self.batch["label"].reshape(-1) > 0.5)
        else:
            return
        sums["correct"] += float((weight * hit).sum())

    def train_epoch(self, data: Iterable[Batch]) -> float:
        """One training pass; returns the weighted mean training loss."""
        if self.optimizer is None:
            raise ValueError("training needs an optimizer")
        self.train_loss, _ = self._pass(data, train=True)
        return self.train_loss

    def validate(self, data: Iterable[Batch]) -> float:
        """Weighted mean loss over ``data`` under ``model.eval()`` and ``torch.no_grad()``; sets ``metrics``."""
        self.val_loss, metrics = self._pass(data, train=False)
        self.metrics = {f"val_{k}": v for k, v in metrics.items()}
        return self.val_loss

    def fit(
        self,
        train_data: Iterable[Batch],
        val_data: Iterable[Batch],
        epochs: int,
        resume_from: str | os.PathLike | None = None,
    ) -> History:
        """Train until ``epochs`` epochs are done (counting those of a resumed checkpoint); return the history."""
        if self.seed is not None:
            seed_everything(self.seed)
        if resume_from is not None:
            self.load_state_dict(torch.load(resume_from, map_location=self.device, weights_only=True))
        self.start_epoch, self.n_epochs, self.stop = self.epoch, int(epochs), self.history.stopped_early
        self._call("on_train_begin")
        while self.epoch < self.n_epochs and not self.stop:
            self._run_epoch(train_data, val_data)
        self._call("on_train_end")
        if self.ranks is not None:
            self.ranks.barrier()  # rank 0's files are written before any rank goes on
        return self.history

    def _run_epoch(self, train_data: Iterable[Batch], val_data: Iterable[Batch]) -> None:
        start = time.perf_counter()
        for data in (train_data, val_data):
            if hasattr(data, "set_epoch"):
                data.set_epoch(self.epoch)
        if self.ranks is not None:  # each rank's own dropout, fixed by seed, epoch and rank
            seed_everything(derive_seed(0 if self.seed is None else self.seed, "epoch", self.epoch,
                                        "rank", self.ranks.rank))
        self._call("on_epoch_begin")
        self.train_epoch(train_data)
        self.validate(val_data)
        if self.scheduler is not None and not steps_per_batch(self.scheduler):
            self.scheduler.step()
        if self.val_loss < self.history.best_loss:
            self.history.best_loss, self.history.best_epoch = self.val_loss, self.epoch
        self.history.epochs.append({"epoch": self.epoch, "train_loss": self.train_loss, "val_loss": self.val_loss,
                                    **self.metrics})
        self.epoch_seconds.append(time.perf_counter() - start)
        self.epoch += 1
        self._call("on_epoch_end")
        self.history.stopped_early = self.stop

    def predict(self, data: Iterable[Batch]) -> np.ndarray:
        """Softmax, sigmoid or regression outputs for every jet of ``data``, in its order."""
        self.training = False
        self.model.eval()
        self._call("on_pred_begin")
        outputs = []
        with torch.no_grad():
            for batch in data:
                outputs.append(outputs_from_logits(self.objective, self._forward(batch)).cpu().numpy())
        self._call("on_pred_end")
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scheduler, epoch, history, callbacks and RNG states as a weights_only-loadable dict."""
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_loss": self.history.best_loss,
            "history": {**self.history.state_dict(), "stopped_early": self.stop},
            "callbacks": [{"type": type(c).__name__, "state": c.state_dict()} for c in self._checkpointed()],
            "rng": get_rng_states(),
        }

    def _checkpointed(self) -> list[Callback]:
        return [c for c in self.callbacks if c.checkpointed]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` so the next epoch runs exactly as it would have without stopping."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
        self.model.load_state_dict(state["model"])
        for name, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler)):
            if (obj is None) != (state[name] is None):
                raise ValueError(f"checkpoint {name} {'missing' if obj is not None else 'present'}: "
                                 "resume with the same optimizer and scheduler settings")
            if obj is not None:
                obj.load_state_dict(state[name])
        if self.scheduler is not None:
            keep_schedule_length(self.scheduler, self._schedule_length)
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.history = History.from_state_dict(state["history"])
        saved, kept = state["callbacks"], self._checkpointed()
        if [s["type"] for s in saved] != [type(c).__name__ for c in kept]:
            raise ValueError(f"checkpoint callbacks {[s['type'] for s in saved]} differ from "
                             f"{[type(c).__name__ for c in kept]}")
        for callback, entry in zip(kept, saved):
            callback.load_state_dict(entry["state"])
        set_rng_states(state["rng"])


def fit(
    model: nn.Module,
    train_data: Iterable[Batch],
    val_data: Iterable[Batch],
    *,
    epochs: int,
    optimizer: Optimizer,
    loss: str | LossFn | None = None,
    scheduler: LRScheduler | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device = "cpu",
    seed: int | None = None,
    resume_from: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs (loss defaults to the model's tail objective) and return its history."""
    fitter = Fitter(model, loss=loss, optimizer=optimizer, scheduler=scheduler, callbacks=callbacks,
                    device=device, seed=seed)
    return fitter.fit(train_data, val_data, epochs, resume_from=resume_from)


def predict(
    model: nn.Module, data: Iterable[Batch], device: str | torch.device = "cpu", objective: str | None = None
) -> np.ndarray:
    """Softmax (multiclass), sigmoid (binary) or raw (regression) outputs of ``model`` over ``data``."""
    return Fitter(model, loss=objective, device=device).predict(data)
