"""TrainFold as one call: train on every fold but one, validate on it, keep the best weights.

Files in ``out_dir``: ``last.pt`` (checkpoint of every state, for ContinueTraining),
``best.pt`` (best weights, torch format), ``iterations.csv`` and ``epochs.csv`` (with their volatile
wall times and memory in ``*.timings.csv``); the task's
target, the model HDF5 written by :func:`tracerflow.io.model_file.write_model`, comes last.
Batches come from the train file or, with ``train.data: tfrecords``, from its TFRecords.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from tracerflow.config.load import objective_of
from tracerflow.models import ModelBuilder, resolve_device
from tracerflow.seeding import derive_seed
from tracerflow.training.callbacks import Checkpoint, EarlyStopping, GradClip, MetricLogger, ReportProgress, SaveBest
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
                  target: TargetTransform = CLASS_INDEX) -> tuple[Loader, Loader]:
    """Shuffled batches of the folds other than ``fold`` and unshuffled ones of ``fold``, from ``train.data``;
    tracks are read only for a model with a set encoder, by ``train.loader_workers`` processes;
    labels become what ``target`` says (a regression reads ``jets/targets`` instead)."""
    with_tracks = bool(train["model"].get("set"))
    options = {"batch_size": train["batch_size"], "with_tracks": with_tracks,
               "sort_by_nodes": with_tracks and train.get("sort_by_nodes", False), "target": target}
    if train.get("data", "h5") == "tfrecords":
        if tfrecords_dir is None:
            raise ValueError("train.data is tfrecords: pass the TFRecords directory of the train split")
        source, make = tfrecords_dir, TFRecordsDataset
    else:
        source = train_path
        make = partial(TrainFileDataset, label_name=TARGETS_NAME if target.objective == "regression" else LABEL_NAME)
    others = [k for k in range(n_folds) if k != fold]
    train_data = make(source, others, shuffle=True, seed=derive_seed(seed, "batches", fold), **options)
    workers = train.get("loader_workers", 0)
    return Loader(train_data, workers), Loader(make(source, [fold], shuffle=False, **options), workers)


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


def train_fold(train_path: str | os.PathLike, fold: int, n_folds: int, train: Mapping[str, Any],
               out_dir: str | os.PathLike, *, seed: int, tfrecords_dir: str | os.PathLike | None = None,
               inputs_digest: str = "", progress: Callable[[float, str], None] | None = None) -> FoldResult:
    """Train on the folds other than ``fold``, validate on ``fold``; ``tfrecords_dir`` for ``train.data: tfrecords``;
    ``inputs_digest`` identifies the data and settings, so that only a checkpoint of the same ones is resumed;
    ``progress(fraction, message)`` hears of each epoch (:class:`ReportProgress`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder, classes = model_builder(train, train_path)
    target, target_names = target_transform(train, train_path, fold)
    model = builder.build(seed=derive_seed(seed, "model", fold))
    train_data, val_data = fold_datasets(train_path, fold, n_folds, train, seed=seed, tfrecords_dir=tfrecords_dir,
                                         target=target)
    optimizer = make_optimizer(train["optimizer"], model.parameters(), train["optimizer_params"])
    scheduler = make_scheduler(train["scheduler"], optimizer, train["scheduler_params"],
                               steps_per_epoch=max(1, len(train_data)), epochs=train["epochs"])
    callbacks: list = []
    if train["grad_clip"] is not None:
        callbacks.append(GradClip(train["grad_clip"]))
    if train["early_stopping"] is not None:
        callbacks.append(EarlyStopping(patience=train["early_stopping"]))
    checkpoint = out_dir / "last.pt"
    resume = resumable(checkpoint, inputs_digest) if train["continue_training"] else None
    callbacks += [SaveBest(out_dir / "best.pt"), MetricLogger(out_dir, tensorboard=train.get("tensorboard", False)),
                  Checkpoint(checkpoint, inputs_digest)]
    if progress is not None:
        callbacks.append(ReportProgress(progress, n_batches=len(train_data)))
    fitter = Fitter(model, optimizer=optimizer, scheduler=scheduler, callbacks=callbacks,
                    device=resolve_device(train["device"]), seed=derive_seed(seed, "fit", fold))
    history = fitter.fit(train_data, val_data, train["epochs"], resume_from=resume)
    model.load_state_dict(torch.load(out_dir / "best.pt", weights_only=True, map_location="cpu"))
    return FoldResult(model.cpu().eval(), builder.resolved_config, history, classes, target, target_names)
