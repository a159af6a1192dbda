"""Evaluation of the fold models: metrics for any class set or regression targets, ensembles,
predictions files, plots and the report.

:mod:`tracerflow.evaluate.plots` is imported on its own, so matplotlib loads only when drawing.
"""
from tracerflow.evaluate.ensemble import ensemble, ensemble_weights
from tracerflow.evaluate.metrics import (
    WORKING_POINTS,
    MetricUndefined,
    NullMetricWarning,
    auc,
    bayes_metrics,
    classification_metrics,
    discriminant,
    expand_binary,
    fold_summary,
    regression_metrics,
    rejection_at,
    roc_curve,
    weighted_quantile,
)
from tracerflow.evaluate.predictions_file import read_predictions, write_predictions

__all__ = [
    "WORKING_POINTS",
    "MetricUndefined",
    "NullMetricWarning",
    "auc",
    "bayes_metrics",
    "classification_metrics",
    "discriminant",
    "ensemble",
    "ensemble_weights",
    "expand_binary",
    "fold_summary",
    "read_predictions",
    "regression_metrics",
    "rejection_at",
    "roc_curve",
    "weighted_quantile",
    "write_predictions",
]
