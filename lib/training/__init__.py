"""Training of the models on a umami train file: fold-restricted batches, optimizers, callbacks and the fit loop."""
from tracerflow.training.callbacks import (
    HOOKS,
    Callback,
    Checkpoint,
    EarlyStopping,
    GradClip,
    MetricLogger,
    SaveBest,
)
from tracerflow.training.data import TrainFileDataset
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

__all__ = [
    "HOOKS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "Fitter",
    "GradClip",
    "History",
    "MetricLogger",
    "SaveBest",
    "TrainFileDataset",
    "fit",
    "get_rng_states",
    "make_optimizer",
    "make_scheduler",
    "outputs_from_logits",
    "per_sample_loss",
    "predict",
    "seed_everything",
    "set_rng_states",
    "steps_per_batch",
    "weighted_loss",
]
