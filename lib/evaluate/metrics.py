"""Weighted flavour-tagging metrics: ROC curves, exact AUC, rejections at working points, fold summaries.

Conventions (umami/DL1 style):

- A jet passes a cut when its score is strictly above it; the cut for a signal efficiency
  ``eff`` is the weighted ``1 - eff`` quantile of the signal scores (inverted-CDF definition, see
  :func:`weighted_quantile`), so the realised efficiency is at most ``eff`` and below it by less
  than the largest single signal weight fraction. Rejection is ``1 / eff_bkg`` (``inf`` when no
  background passes).
- The tagger discriminant is ``D = log(p_s / (f p_f + (1 - f) sum(p_other)))``; for b-tagging
  ``p_f = p_c`` and ``f = fc`` (default :data:`DEFAULT_FC` = 0.05, a light-leaning choice for the
  toy; ATLAS DL1 used 0.018 and later taggers larger values).
- One-vs-one AUCs rank jets by ``log(p_i / p_j)``, equivalent to ``p_i / (p_i + p_j)`` but free of
  its saturation at 1; it does not depend on ``fc`` and, for calibrated probabilities, is the
  Bayes-optimal ranking of that pair.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

DEFAULT_FC = 0.05
WORKING_POINTS = (0.60, 0.70, 0.77, 0.85)
_PROB_FLOOR = 1e-30


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Weights as float64, ones when none are given; length checked."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights have shape {w.shape}, expected ({n},)")
    return w


def weighted_quantile(values: np.ndarray, q: float | np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Inverted-CDF quantile: the smallest value whose cumulative weight fraction reaches ``q``.

    With unit weights this is ``np.quantile(values, q, method="inverted_cdf")``; with integer
    weights it equals the quantile of the values repeated by their weights. ``q`` is lowered by
    a relative 1e-12 so that rounding (``1 - 0.7`` is a hair above 0.3) cannot skip a value.
    """
    values = np.asarray(values, dtype=np.float64)
    w = _weights(weights, len(values))
    if len(values) == 0 or w.sum() <= 0:
        raise ValueError("weighted_quantile needs at least one value with positive total weight")
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(w[order]) / w.sum()
    q = np.asarray(q, dtype=np.float64)
    pos = np.searchsorted(cdf, q * (1 - 1e-12), side="left")
    return values[order][np.minimum(pos, len(values) - 1)]


def roc_curve(scores: np.ndarray, is_signal: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted (signal efficiency, background efficiency) for cuts at every distinct score, from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    sig = np.asarray(is_signal, dtype=bool)
    w = _weights(weights, len(scores))
    order = np.argsort(-scores, kind="stable")
    s, sig, w = scores[order], sig[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, dtype=np.int64)
    tp = np.cumsum(np.where(sig, w, 0.0))[last]
    fp = np.cumsum(np.where(sig, 0.0, w))[last]
    total_s = tp[-1] if len(tp) else 0.0
    total_b = fp[-1] if len(fp) else 0.0
    if total_s <= 0 or total_b <= 0:
        raise ValueError("roc_curve needs positive signal and background weight")
    return np.r_[0.0, tp / total_s], np.r_[0.0, fp / total_b]


def auc(scores: np.ndarray, is_signal: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Exact weighted AUC: P(signal scores above background) with ties counted as one half."""
    scores = np.asarray(scores, dtype=np.float64)
    sig = np.asarray(is_signal, dtype=bool)
    w = _weights(weights, len(scores))
    uniq, group = np.unique(scores, return_inverse=True)
    w_sig = np.bincount(group, weights=np.where(sig, w, 0.0), minlength=len(uniq))
    w_bkg = np.bincount(group, weights=np.where(sig, 0.0, w), minlength=len(uniq))
    total_s, total_b = w_sig.sum(), w_bkg.sum()
    if total_s <= 0 or total_b <= 0:
        raise ValueError("auc needs positive signal and background weight")
    below = np.cumsum(w_bkg) - w_bkg
    return float(np.sum(w_sig * (below + 0.5 * w_bkg)) / (total_s * total_b))


def rejection_at(sig_eff_targets: Sequence[float], scores: np.ndarray, signal: np.ndarray,
                 background: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Background rejection ``1 / eff_bkg`` at each target signal efficiency (masks pick signal and background)."""
    scores = np.asarray(scores, dtype=np.float64)
    w = _weights(weights, len(scores))
    signal = np.asarray(signal, dtype=bool)
    background = np.asarray(background, dtype=bool)
    cuts = weighted_quantile(scores[signal], 1.0 - np.asarray(sig_eff_targets, dtype=np.float64), w[signal])
    w_bkg, s_bkg = w[background], scores[background]
    total = w_bkg.sum()
    if total <= 0:
        raise ValueError("rejection_at needs positive background weight")
    passed = np.array([w_bkg[s_bkg > cut].sum() for cut in np.atleast_1d(cuts)])
    with np.errstate(divide="ignore"):
        return total / passed


def _class_index(class_names: Sequence[str], name: str) -> int:
    """Position of ``name`` among the class names, with a clear error."""
    names = list(class_names)
    if name not in names:
        raise ValueError(f"class {name!r} not among {names}")
    return names.index(name)


def tagger_discriminant(probs: np.ndarray, class_names: Sequence[str], signal: str = "bjets",
                        fc: float = DEFAULT_FC, fraction_class: str = "cjets") -> np.ndarray:
    """``log(p_sig / (fc p_frac + (1 - fc) sum(p_rest)))``: the DL1/umami tagger output (b-tagging by default)."""
    p = np.maximum(np.asarray(probs, dtype=np.float64), _PROB_FLOOR)
    s = _class_index(class_names, signal)
    f = _class_index(class_names, fraction_class)
    rest = [i for i in range(p.shape[1]) if i not in (s, f)]
    denom = fc * p[:, f] + (1.0 - fc) * p[:, rest].sum(axis=1)
    return np.log(p[:, s]) - np.log(denom)


def _summary(log_scores: np.ndarray, tag_scores: Mapping[str, np.ndarray], labels: np.ndarray,
             class_names: Sequence[str], weights: np.ndarray | None, signal: str,
             working_points: Sequence[float]) -> dict[str, float]:
    """Pair AUCs from per-class log scores and rejections of each background from its tagging score."""
    labels = np.asarray(labels)
    w = _weights(weights, len(labels))
    names = list(class_names)
    out: dict[str, float] = {}
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            pair = (labels == i) | (labels == j)
            out[f"auc_{names[i]}_vs_{names[j]}"] = auc(
                log_scores[pair, i] - log_scores[pair, j], labels[pair] == i, w[pair])
    s = _class_index(names, signal)
    for bkg, score in tag_scores.items():
        rej = rejection_at(working_points, score, labels == s, labels == _class_index(names, bkg), w)
        for wp, value in zip(working_points, rej):
            out[f"{bkg}_rejection_{round(100 * wp)}"] = float(value)
    return out


def flavour_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                    weights: np.ndarray | None = None, *, signal: str = "bjets", fc: float = DEFAULT_FC,
                    fraction_class: str = "cjets",
                    working_points: Sequence[float] = WORKING_POINTS) -> dict[str, float]:
    """A model's one-vs-one AUCs (``auc_<i>_vs_<j>``) and ``<bkg>_rejection_<wp>`` from its tagger discriminant."""
    p = np.maximum(np.asarray(probs, dtype=np.float64), _PROB_FLOOR)
    disc = tagger_discriminant(p, class_names, signal, fc, fraction_class)
    backgrounds = {name: disc for name in class_names if name != signal}
    return _summary(np.log(p), backgrounds, labels, class_names, weights, signal, working_points)


def bayes_metrics(llr_bl: np.ndarray, llr_cl: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  weights: np.ndarray | None = None, *, b: str = "bjets", c: str = "cjets", light: str = "ujets",
                  working_points: Sequence[float] = WORKING_POINTS) -> dict[str, float]:
    """The same keys as :func:`flavour_metrics` for the exact LLRs: the best any tagger can reach.

    Each pair is ranked by its own likelihood ratio (b vs light: ``llr_bl``; c vs light:
    ``llr_cl``; b vs c: ``llr_bl - llr_cl``), so every AUC and every b-tagging rejection is the
    Neyman-Pearson optimum for that pair; a single discriminant can reach each only separately.
    """
    names = list(class_names)
    if set(names) != {b, c, light}:
        raise ValueError(f"bayes_metrics needs exactly the classes {b!r}, {c!r}, {light!r}; got {names}")
    llr = {b: np.asarray(llr_bl, dtype=np.float64), c: np.asarray(llr_cl, dtype=np.float64),
           light: np.zeros(len(llr_bl), dtype=np.float64)}
    log_scores = np.stack([llr[name] for name in names], axis=1)
    tag = {c: llr[b] - llr[c], light: llr[b]}
    return _summary(log_scores, tag, labels, names, weights, b, working_points)


def fold_summary(per_fold: Sequence[Mapping[str, float]]) -> dict[str, dict[str, object]]:
    """``{metric: {mean, std, per_fold}}`` across folds; ``std`` is the sample std (0 for one fold)."""
    if not per_fold:
        raise ValueError("fold_summary needs at least one fold")
    keys = list(per_fold[0])
    for i, metrics in enumerate(per_fold):
        if set(metrics) != set(keys):
            raise ValueError(f"fold {i} has metrics {sorted(metrics)}, fold 0 has {sorted(keys)}")
    out: dict[str, dict[str, object]] = {}
    for key in keys:
        values = np.array([float(m[key]) for m in per_fold])
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(np.mean(values)), "std": std, "per_fold": values.tolist()}
    return out
