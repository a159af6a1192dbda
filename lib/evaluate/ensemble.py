"""Ensembles of the k fold models: per-model weights and the weighted average of their predictions."""
from __future__ import annotations

from typing import Sequence

import numpy as np

MODES = ("uniform", "reciprocal")


def ensemble_weights(losses: Sequence[float], mode: str = "uniform") -> np.ndarray:
    """Weights summing to 1: equal (``uniform``) or proportional to 1 / validation loss (``reciprocal``, as LUMIN)."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or len(losses) == 0:
        raise ValueError("ensemble_weights needs a non-empty 1-d sequence of losses")
    if mode == "uniform":
        return np.full(len(losses), 1.0 / len(losses))
    if mode == "reciprocal":
        if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
            raise ValueError(f"reciprocal weights need positive finite losses, got {losses.tolist()}")
        inverse = 1.0 / losses
        return inverse / inverse.sum()
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def ensemble(preds: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of the models' ``(n, k)`` predictions (weights renormalised to 1; equal when omitted)."""
    if not preds:
        raise ValueError("ensemble needs at least one model's predictions")
    shape = np.shape(preds[0])
    if any(np.shape(p) != shape for p in preds):
        raise ValueError(f"predictions differ in shape: {[np.shape(p) for p in preds]}")
    w = ensemble_weights([1.0] * len(preds)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(preds),) or w.sum() <= 0 or np.any(w < 0):
        raise ValueError(f"need {len(preds)} non-negative weights with a positive sum, got {w.tolist()}")
    w = w / w.sum()
    out = np.zeros(shape, dtype=np.float64)
    for weight, pred in zip(w, preds):
        out += weight * np.asarray(pred, dtype=np.float64)
    return out.astype(np.result_type(*[np.asarray(p).dtype for p in preds], np.float32))
