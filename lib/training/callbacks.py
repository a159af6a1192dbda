"""Callbacks interjecting at LUMIN's points of the training loop: stopping, saving, clipping and logging."""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

import torch

from tracerflow.io.atomic import replacing

if TYPE_CHECKING:
    from tracerflow.training.fit import Fitter

HOOKS = (
    "on_train_begin", "on_epoch_begin", "on_fold_begin", "on_batch_begin", "on_forwards_end",
    "on_backwards_begin", "on_backwards_end", "on_batch_end", "on_fold_end", "on_epoch_end",
    "on_train_end", "on_pred_begin", "on_pred_end",
)


class Callback:
    """Base class: every hook receives the :class:`Fitter` and does nothing unless overridden.

    A fold is one pass over a data set inside an epoch (training, then validation: see
    ``fitter.training``). ``state_dict``/``load_state_dict`` carry what a resumed run needs. In a
    distributed training every rank runs the same callbacks with the same state; those that write
    files write only where ``fitter.is_main`` (rank 0).
    """

    #: Whether the callback's state goes in checkpoints (False: an observer that keeps none, which
    #: may come and go between a run and its continuation).
    checkpointed = True

    def on_train_begin(self, fitter: "Fitter") -> None: ...
    def on_epoch_begin(self, fitter: "Fitter") -> None: ...
    def on_fold_begin(self, fitter: "Fitter") -> None: ...
    def on_batch_begin(self, fitter: "Fitter") -> None: ...
    def on_forwards_end(self, fitter: "Fitter") -> None: ...
    def on_backwards_begin(self, fitter: "Fitter") -> None: ...
    def on_backwards_end(self, fitter: "Fitter") -> None: ...
    def on_batch_end(self, fitter: "Fitter") -> None: ...
    def on_fold_end(self, fitter: "Fitter") -> None: ...
    def on_epoch_end(self, fitter: "Fitter") -> None: ...
    def on_train_end(self, fitter: "Fitter") -> None: ...
    def on_pred_begin(self, fitter: "Fitter") -> None: ...
    def on_pred_end(self, fitter: "Fitter") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state saved in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EarlyStopping(Callback):
    """Stop once the validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, patience: int = 3, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best, self.wait = math.inf, 0

    def on_epoch_end(self, fitter: "Fitter") -> None:
        if fitter.val_loss < self.best - self.min_delta:
            self.best, self.wait = fitter.val_loss, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            fitter.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


class SaveBest(Callback):
    """Write the model's state_dict to ``path`` (atomically) whenever the validation loss reaches a new minimum."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.best = math.inf

    def on_epoch_end(self, fitter: "Fitter") -> None:
        if fitter.val_loss < self.best:
            self.best = fitter.val_loss
            if _writes(fitter):
                _save(fitter.model.state_dict(), self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])


class Checkpoint(Callback):
    """Write everything a resumed run needs to ``path`` after each epoch; list it after the other callbacks.

    ``inputs_digest`` (of the data and settings the fold is trained from) is stored with it, so a
    later run resumes only a checkpoint of the same inputs (:func:`tracerflow.training.fold.resumable`).
    """

    def __init__(self, path: str | os.PathLike, inputs_digest: str = "") -> None:
        self.path = Path(path)
        self.inputs_digest = inputs_digest

    def on_epoch_end(self, fitter: "Fitter") -> None:
        if _writes(fitter):
            _save({**fitter.state_dict(), "inputs_digest": self.inputs_digest}, self.path)


def _writes(fitter: "Fitter") -> bool:
    """Whether this process writes the training's files: rank 0 of a distributed training, or the
    one process (also any object standing in for a Fitter without ``is_main``)."""
    return getattr(fitter, "is_main", True)


def _save(state: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically, through a Python file: a full disk is then an
    ``OSError`` with its errno, where torch's own file writer raises a bare RuntimeError."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def _keep_rows(path: Path, n: int) -> None:
    """Cut the CSV log at ``path`` (one row per iteration or epoch) to its header and first ``n`` rows,
    atomically: what a killed run logged after its last checkpoint, a half-written row included."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if len(lines) <= n + 1:
        return
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        f.writelines(lines[:n + 1])


def _append_row(path: Path, record: dict) -> None:
    """Append ``record`` to the CSV at ``path``, with a header when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)


class GradClip(Callback):
    """Clip the gradients' total norm to ``max_norm`` after each backward pass."""

    def __init__(self, max_norm: float, norm_type: float = 2.0) -> None:
        if max_norm <= 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)

    def on_backwards_end(self, fitter: "Fitter") -> None:
        torch.nn.utils.clip_grad_norm_(fitter.model.parameters(), self.max_norm, norm_type=self.norm_type)


def _memory_mb(device: torch.device) -> float:
    """Peak CUDA memory on a GPU, else the process's resident memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import psutil
    except ImportError:
        return float("nan")
    return psutil.Process().memory_info().rss / 2**20


class MetricLogger(Callback):
    """Write ``iterations.csv`` per training batch and ``epochs.csv`` per epoch, the same for two runs of
    one config; wall times and memory go to ``iterations.timings.csv`` and ``epochs.timings.csv``,
    which differ from run to run. A resumed run first cuts the four files to the rows of its
    checkpoint, so a run killed after logging past its last checkpoint leaves no rows twice. With
    ``tensorboard`` also TensorBoard event files in ``<directory>/tensorboard`` (the package must be
    installed)."""

    ITERATION_COLUMNS = ("iteration", "epoch", "loss", "lr")
    ITERATION_TIMINGS = ("iteration", "time", "memory")
    EPOCH_TIMINGS = ("epoch", "time")

    def __init__(self, directory: str | os.PathLike, tensorboard: bool = False) -> None:
        self.directory = Path(directory)
        self.tensorboard = tensorboard
        self._iterations: TextIO | None = None
        self._timings: TextIO | None = None
        self._writer: Any = None
        self._start = 0.0

    def on_train_begin(self, fitter: "Fitter") -> None:
        if not _writes(fitter):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "iterations.csv"
        fresh = fitter.start_epoch == 0 or not path.exists()
        if not fresh:  # a killed run may have logged past its last checkpoint: those rows are run again
            for name in ("iterations.csv", "iterations.timings.csv"):
                _keep_rows(self.directory / name, fitter.iteration)
            for name in ("epochs.csv", "epochs.timings.csv"):
                _keep_rows(self.directory / name, fitter.epoch)
        self._iterations = open(path, "w" if fresh else "a", newline="")
        self._timings = open(self.directory / "iterations.timings.csv", "w" if fresh else "a", newline="")
        if fresh:
            csv.writer(self._iterations).writerow(self.ITERATION_COLUMNS)
            csv.writer(self._timings).writerow(self.ITERATION_TIMINGS)
            (self.directory / "epochs.csv").unlink(missing_ok=True)
            (self.directory / "epochs.timings.csv").unlink(missing_ok=True)
        self._start = time.perf_counter()
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError("MetricLogger(tensorboard=True) needs the tensorboard package") from err
            self._writer = SummaryWriter(str(self.directory / "tensorboard"))

    def on_batch_end(self, fitter: "Fitter") -> None:
        if not fitter.training or self._iterations is None:
            return
        loss, _ = fitter.batch_loss()
        lr = fitter.optimizer.param_groups[0]["lr"]
        csv.writer(self._iterations).writerow((fitter.iteration, fitter.epoch, loss, lr))
        if self._timings is not None:
            csv.writer(self._timings).writerow((fitter.iteration, time.perf_counter() - self._start,
                                                _memory_mb(fitter.device)))
        if self._writer is not None:
            self._writer.add_scalar("loss/iteration", loss, fitter.iteration)
            self._writer.add_scalar("lr", lr, fitter.iteration)

    def on_epoch_end(self, fitter: "Fitter") -> None:
        if not _writes(fitter):
            return
        record = fitter.history.epochs[-1]
        _append_row(self.directory / "epochs.csv", record)
        _append_row(self.directory / "epochs.timings.csv",
                    dict(zip(self.EPOCH_TIMINGS, (record["epoch"], fitter.epoch_seconds[-1]))))
        for f in (self._iterations, self._timings):
            if f is not None:
                f.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    self._writer.add_scalar(f"epoch/{key}", value, record["epoch"])

    def on_train_end(self, fitter: "Fitter") -> None:
        for f in (self._iterations, self._timings):
            if f is not None:
                f.close()
        self._iterations = self._timings = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ReportProgress(Callback):
    """Tell ``report(fraction, message)`` how far the training is: after each epoch (epoch k of n,
    train and validation loss) and, at most every ``interval`` seconds, within one (the batch of
    the training pass and its running loss). An observer: nothing of it is checkpointed."""

    checkpointed = False

    def __init__(self, report: Callable[[float, str], None], n_batches: int = 0, interval: float = 2.0) -> None:
        self.report = report
        self.n_batches = n_batches  # training batches of an epoch (0: unknown)
        self.interval = interval
        self._last = 0.0
        self._batches = 0
        self._sum = self._weight = 0.0

    def on_epoch_begin(self, fitter: "Fitter") -> None:
        self._batches, self._sum, self._weight = 0, 0.0, 0.0
        self._last = time.monotonic()
        self.report(fitter.epoch / max(fitter.n_epochs, 1), f"epoch {fitter.epoch + 1} of {fitter.n_epochs}: training")

    def on_batch_end(self, fitter: "Fitter") -> None:
        if not fitter.training:
            return
        self._batches += 1
        loss, weight = fitter.batch_loss()
        self._sum += loss * weight
        self._weight += weight
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        n = self.n_batches
        within = min(self._batches / n, 1.0) if n else 0.0
        batches = f"batch {self._batches:,} of {n:,}" if n else f"batch {self._batches:,}"
        loss = self._sum / self._weight if self._weight else math.nan
        self.report((fitter.epoch + within) / max(fitter.n_epochs, 1),
                    f"epoch {fitter.epoch + 1} of {fitter.n_epochs}: {batches}, train loss {loss:.4f}")

    def on_epoch_end(self, fitter: "Fitter") -> None:
        epoch = fitter.history.epochs[-1]
        self.report(fitter.epoch / max(fitter.n_epochs, 1),
                    f"epoch {fitter.epoch} of {fitter.n_epochs} done: train loss {epoch['train_loss']:.4f}, "
                    f"val loss {epoch['val_loss']:.4f} (best {fitter.history.best_loss:.4f}, "
                    f"epoch {fitter.history.best_epoch + 1})")
