"""Training on a umami train file or its TFRecords: fold-restricted batches, optimizers, callbacks, the fit loop."""
from tracerflow.training.callbacks import (
    HOOKS,
    Callback,
    Checkpoint,
    EarlyStopping,
    GradClip,
    MetricLogger,
    SaveBest,
)
from tracerflow.training.batching import batch_rows, sorted_batches, trim_tracks
from tracerflow.training.data import BlockDataset, Loader, TrainFileDataset
from tracerflow.training.fit import (
    Fitter,
    History,
    fit,
    get_rng_states,
    outputs_from_logits,
    per_sample_loss,
    predict,
    seed_everything,
    set_rng_states,
    weighted_loss,
)
from tracerflow.training.optim import OPTIMIZERS, SCHEDULERS, make_optimizer, make_scheduler, steps_per_batch
from tracerflow.training.tfrecord_data import TFRecordsDataset

__all__ = [
    "HOOKS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "BlockDataset",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "Fitter",
    "GradClip",
    "History",
    "MetricLogger",
    "SaveBest",
    "TFRecordsDataset",
    "TrainFileDataset",
    "Loader",
    "batch_rows",
    "fit",
    "get_rng_states",
    "make_optimizer",
    "make_scheduler",
    "outputs_from_logits",
    "per_sample_loss",
    "predict",
    "seed_everything",
    "set_rng_states",
    "sorted_batches",
    "steps_per_batch",
    "trim_tracks",
    "weighted_loss",
]
