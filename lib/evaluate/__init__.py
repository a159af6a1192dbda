"""Evaluation of the fold models: metrics against the Bayes optimum, ensembles, predictions files and plots.

:mod:`tracerflow.evaluate.plots` is imported on its own, so matplotlib loads only when drawing.
"""
from tracerflow.evaluate.ensemble import ensemble, ensemble_weights
from tracerflow.evaluate.metrics import (
    DEFAULT_FC,
    WORKING_POINTS,
    auc,
    bayes_metrics,
    flavour_metrics,
    fold_summary,
    rejection_at,
    roc_curve,
    tagger_discriminant,
    weighted_quantile,
)
from tracerflow.evaluate.predictions_file import read_predictions, write_predictions

__all__ = [
    "DEFAULT_FC",
    "WORKING_POINTS",
    "auc",
    "bayes_metrics",
    "ensemble",
    "ensemble_weights",
    "flavour_metrics",
    "fold_summary",
    "read_predictions",
    "rejection_at",
    "roc_curve",
    "tagger_discriminant",
    "weighted_quantile",
    "write_predictions",
]
