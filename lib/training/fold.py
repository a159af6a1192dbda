"""TrainFold as one call: train on every fold but one, validate on it, keep the best weights.

Files in ``out_dir``: ``last.pt`` (checkpoint of every state, for ContinueTraining),
``best.pt`` (best weights, torch format), ``iterations.csv`` and ``epochs.csv`` (with their volatile
wall times and memory in ``*.timings.csv``); the task's
target, the model HDF5 written by :func:`tracerflow.io.model_file.write_model`, comes last.
Batches come from the train file or, with ``train.data: tfrecords``, from its TFRecords.

With ``train.distributed.world_size`` N > 1 the fold is trained by N processes with
DistributedDataParallel (:mod:`tracerflow.training.distributed`): ``train.batch_size`` is the
global batch, each process trains on ``batch_size / N`` jets of its share of every epoch and
validates its share of the held-out fold; rank 0 writes every file above, and the fold's result
(best weights, history) is what it wrote, so nothing depends on N but the batches themselves.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from tracerflow.config.load import objective_of
from tracerflow.models import ModelBuilder, resolve_device
from tracerflow.seeding import derive_seed
from tracerflow.training.callbacks import Checkpoint, EarlyStopping, GradClip, MetricLogger, ReportProgress, SaveBest
from tracerflow.training import distributed
from tracerflow.training.data import CLASS_INDEX, LABEL_NAME, TARGETS_NAME, Loader, TargetTransform, TrainFileDataset
from tracerflow.training.fit import Fitter, History
from tracerflow.training.optim import make_optimizer, make_scheduler
from tracerflow.training.tfrecord_data import TFRecordsDataset
from tracerflow.write.umami_file import UmamiFile


@dataclass
class FoldResult:
    """The trained model of one fold, the config that rebuilds it, its history and what it predicts."""

    model: torch.nn.Module
    model_config: dict[str, Any]
    history: History
    class_names: list[str]
    target: TargetTransform
    target_names: list[str]
    #: This process's rank in a distributed training started by torchrun or srun (0 otherwise):
    #: only rank 0 writes the fold's files.
    rank: int = field(default=0)

    @property
    def writes_outputs(self) -> bool:
        """Whether this process writes the fold's model file (rank 0 does)."""
        return self.rank == 0

    def attrs(self) -> dict[str, Any]:
        """What a reader of the model needs to use its outputs: the objective, the class a binary
        output scores, the targets of a regression and the scaling that gives their units back."""
        target = self.target
        return {"objective": target.objective, "class_names": self.class_names,
                "positive": self.class_names[target.positive] if target.objective == "binary" else "",
                "targets": json.dumps(self.target_names), "target_shift": json.dumps(list(target.shift)),
                "target_scale": json.dumps(list(target.scale))}


def model_builder(train: Mapping[str, Any], train_path: str | os.PathLike) -> tuple[ModelBuilder, list[str]]:
    """The ``train.model`` block with sizes and the number of outputs taken from the train file:
    one per class (multiclass), one (binary) or one per target (regression)."""
    with UmamiFile(train_path) as f:
        n_jet = f.dataset("jets/inputs").shape[1]
        n_track = len(f.track_variables)
        classes = list(f.class_names)
        n_targets = len(f.target_names)
    config = {k: dict(v) if isinstance(v, Mapping) else v for k, v in train["model"].items()}
    tail = dict(config.get("tail") or {})
    objective = objective_of(train)
    if objective == "multiclass":
        tail.setdefault("n_out", len(classes))
    elif objective == "regression":
        tail.setdefault("n_out", n_targets)
    config["tail"] = tail
    return ModelBuilder(config, n_jet_vars=n_jet, n_track_vars=n_track), classes


def target_transform(train: Mapping[str, Any], train_path: str | os.PathLike, fold: int) -> tuple[TargetTransform, list[str]]:
    """What the fold's model learns, and the target names of a regression: the positive class of a
    binary objective (``train.positive``, by default the last class), and for a regression each
    target's mean and standard deviation over the rows it trains on (every fold but ``fold``)."""
    objective = objective_of(train)
    with UmamiFile(train_path) as f:
        classes, names = list(f.class_names), list(f.target_names)
        if objective == "binary":
            positive = train["positive"] if train["positive"] is not None else classes[-1]
            return TargetTransform("binary", positive=classes.index(positive)), names
        if objective != "regression":
            return TargetTransform(objective), names
        if not names:
            raise ValueError(f"{train_path}: the regression objective needs targets (write.targets), the file has none")
        values = f.dataset(TARGETS_NAME)[:].astype(np.float64)
        values = values[f.dataset("jets/fold")[:] != fold]
    if not len(values):
        raise ValueError(f"{train_path}: no rows to train fold {fold} on")
    shift = values.mean(axis=0)
    scale = values.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return TargetTransform("regression", shift=tuple(map(float, shift)), scale=tuple(map(float, scale))), names


def fold_datasets(train_path: str | os.PathLike, fold: int, n_folds: int, train: Mapping[str, Any], *, seed: int,
                  tfrecords_dir: str | os.PathLike | None = None,
                  target: TargetTransform = CLASS_INDEX, shard: tuple[int, int] = (0, 1)) -> tuple[Loader, Loader]:
    """Shuffled batches of the folds other than ``fold`` and unshuffled ones of ``fold``, from ``train.data``;
    tracks are read only for a model with a set encoder, by ``train.loader_workers`` processes;
    labels become what ``target`` says (a regression reads ``jets/targets`` instead). With
    ``shard=(rank, world_size)``, this rank's share: batches of ``batch_size / world_size`` jets of
    an equal share of each epoch's training rows, and its part of the validation rows."""
    with_tracks = bool(train["model"].get("set"))
    rank, world = shard
    if train["batch_size"] % world:
        raise ValueError(f"train.batch_size {train['batch_size']} does not divide by train.distributed.world_size "
                         f"{world}")
    options = {"batch_size": train["batch_size"] // world, "with_tracks": with_tracks,
               "sort_by_nodes": with_tracks and train.get("sort_by_nodes", False), "target": target}
    if world > 1:
        options["shard"] = (rank, world)
    if train.get("data", "h5") == "tfrecords":
        if tfrecords_dir is None:
            raise ValueError("train.data is tfrecords: pass the TFRecords directory of the train split")
        source, make = tfrecords_dir, TFRecordsDataset
    else:
        source = train_path
        make = partial(TrainFileDataset, label_name=TARGETS_NAME if target.objective == "regression" else LABEL_NAME)
    others = [k for k in range(n_folds) if k != fold]
    train_data = make(source, others, shuffle=True, seed=derive_seed(seed, "batches", fold), **options)
    validation = {**options, "even_shards": False} if world > 1 else options
    workers = train.get("loader_workers", 0)
    return Loader(train_data, workers), Loader(make(source, [fold], shuffle=False, **validation), workers)


def resumable(checkpoint: Path, inputs_digest: str) -> Path | None:
    """``checkpoint`` when ContinueTraining may resume it: it exists and was made from the same
    inputs (``inputs_digest``: data and settings apart from those that may grow, such as epochs).
    A checkpoint of other inputs is not resumed: training starts fresh, and a warning says why. A
    file that is not a readable checkpoint is an error naming it."""
    if not checkpoint.exists():
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle's UnpicklingError, EOFError, ...
        first = str(err).strip().split("\n")[0].split(". ")[0][:120]  # torch's run on for paragraphs
        why = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise ValueError(f"{checkpoint}: not a readable checkpoint ({why}); delete it "
                         "or set train.continue_training: false") from None
    made_from = state.get("inputs_digest") if isinstance(state, Mapping) else None
    if made_from != inputs_digest:
        warnings.warn(f"{checkpoint} was made from other inputs (data or settings changed since): training "
                      "this fold from the start instead of continuing it", stacklevel=2)
        return None
    return checkpoint


@dataclass(frozen=True)
class FoldJob:
    """Everything one fold's training needs, as plain values: what each process of a distributed
    training receives (spawned processes get it pickled)."""

    train_path: str
    fold: int
    n_folds: int
    train: Mapping[str, Any]
    out_dir: str
    seed: int
    tfrecords_dir: str | None
    inputs_digest: str
    target: TargetTransform
    resume: str | None

    def fit(self, ranks: "distributed.Ranks | None" = None,
            progress: Callable[[float, str], None] | None = None) -> tuple[torch.nn.Module, History]:
        """Build the model, the batches, optimizer, scheduler and callbacks, and train; ``ranks``
        makes this one rank of a distributed training (its share of the data, rank 0 writes)."""
        train, out_dir, fold, seed = self.train, Path(self.out_dir), self.fold, self.seed
        builder, _ = model_builder(train, self.train_path)
        model = builder.build(seed=derive_seed(seed, "model", fold))
        shard = (0, 1) if ranks is None else (ranks.rank, ranks.world_size)
        train_data, val_data = fold_datasets(self.train_path, fold, self.n_folds, train, seed=seed,
                                             tfrecords_dir=self.tfrecords_dir, target=self.target, shard=shard)
        optimizer = make_optimizer(train["optimizer"], model.parameters(), train["optimizer_params"])
        scheduler = make_scheduler(train["scheduler"], optimizer, train["scheduler_params"],
                                   steps_per_epoch=max(1, len(train_data)), epochs=train["epochs"])
        callbacks: list = []
        if train["grad_clip"] is not None:
            callbacks.append(GradClip(train["grad_clip"]))
        if train["early_stopping"] is not None:
            callbacks.append(EarlyStopping(patience=train["early_stopping"]))
        callbacks += [SaveBest(out_dir / "best.pt"), MetricLogger(out_dir, tensorboard=train.get("tensorboard", False)),
                      Checkpoint(out_dir / "last.pt", self.inputs_digest)]
        if progress is not None:
            callbacks.append(ReportProgress(progress, n_batches=len(train_data)))
        device = resolve_device(train["device"]) if ranks is None else ranks.device
        fitter = Fitter(model, optimizer=optimizer, scheduler=scheduler, callbacks=callbacks,
                        device=device, seed=derive_seed(seed, "fit", fold), ranks=ranks)
        history = fitter.fit(train_data, val_data, train["epochs"], resume_from=self.resume)
        return model, history

    def __call__(self, ranks: "distributed.Ranks", progress: Callable[[float, str], None] | None) -> dict[str, Any]:
        """One rank's training (:func:`tracerflow.training.distributed.run`); returns the history as plain data."""
        ranks.same("fold", (self.fold, self.inputs_digest))
        _, history = self.fit(ranks, progress)
        return history.state_dict()


def train_fold(train_path: str | os.PathLike, fold: int, n_folds: int, train: Mapping[str, Any],
               out_dir: str | os.PathLike, *, seed: int, tfrecords_dir: str | os.PathLike | None = None,
               inputs_digest: str = "", progress: Callable[[float, str], None] | None = None) -> FoldResult:
    """Train on the folds other than ``fold``, validate on ``fold``; ``tfrecords_dir`` for ``train.data: tfrecords``;
    ``inputs_digest`` identifies the data and settings, so that only a checkpoint of the same ones is resumed;
    ``progress(fraction, message)`` hears of each epoch (:class:`ReportProgress`). With
    ``train.distributed.world_size`` > 1 the processes are spawned here, or, started by torchrun
    or srun, this process is one of them (then only the result of rank 0 has ``writes_outputs``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder, classes = model_builder(train, train_path)
    target, target_names = target_transform(train, train_path, fold)
    launch = distributed.launch_of(train["distributed"], train["device"])
    checkpoint = out_dir / "last.pt"
    resume = resumable(checkpoint, inputs_digest) if train["continue_training"] else None
    job = FoldJob(str(train_path), fold, n_folds, train, str(out_dir), seed,
                  None if tfrecords_dir is None else str(tfrecords_dir), inputs_digest, target,
                  None if resume is None else str(resume))
    rank = 0
    if launch is None:
        model, history = job.fit(None, progress)
    else:
        state, rank = distributed.run(job, launch, progress)
        history = History.from_state_dict(state)
        model = builder.build(seed=derive_seed(seed, "model", fold))
    model.load_state_dict(torch.load(out_dir / "best.pt", weights_only=True, map_location="cpu"))
    return FoldResult(model.cpu().eval(), builder.resolved_config, history, classes, target, target_names, rank)
