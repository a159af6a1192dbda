"""Weighted metrics of classifiers (any class set) and regressions, with null values that say why.

Classification (``k`` classes, probabilities ``(n, k)`` in class-index order, labels = class index):

- ``auc_<i>_vs_<j>`` for every class pair ``i < j``: rows of the two classes ranked by
  ``log(p_i / p_j)`` (equivalent to ``p_i / (p_i + p_j)`` but free of its saturation at 1; for
  calibrated probabilities the Bayes-optimal ranking of that pair).
- ``auc_<i>_vs_rest`` for every class when there are more than two (with two it is the pair AUC):
  all rows ranked by ``log(p_i / sum_{j != i} p_j)``.
- with a discriminant block ``{signal, fractions, working_points}`` (umami/puma style):
  ``D = log(p_s / (sum_f f_i p_i + (1 - sum_f f_i) sum_{other} p_j))``, where ``other`` are the
  classes that are neither the signal nor in ``fractions``, and ``<bkg>_rejection_<wp>`` for each
  background class and working point (signal efficiency in percent, rounded).
- binary (a ``positive`` class): also ``<other>_rejection_<eff>`` at the positive-class
  efficiencies :data:`BINARY_EFFICIENCIES` (50, 80, 90%), ranked by ``log(p_pos / p_other)``; a
  discriminant's key of the same name is kept (for two classes it ranks the same way).
- a reference score (:func:`reference_metrics`, two classes): the pair AUC and, binary, the
  same rejections, for the score ranking the positive class against the other.
- the confusion matrix: predicted class = argmax of the probabilities (binary: the positive class
  when its probability is above 0.5, the other one otherwise); ``weights[true][predicted]`` are
  sums of weights and ``fractions[true]`` each row divided by its total.
- calibration (reliability) per class: ``bins`` equal-width bins of ``p_i`` on [0, 1]; per bin
  the weighted mean of ``p_i``, the weighted fraction of rows of class ``i`` (``observed``), the
  total weight and the row count.

Regression (predictions and true values ``(n, t)``): per target, ``bias_<t>`` = median and
``resolution_<t>`` = interquartile range (q75 - q25) of the residuals ``pred - true``, overall and,
when a binning is given, in bins of one variable. Rows whose residual is not finite are left out.

Weights (signed weights, e.g. NanoAOD ``genWeight``, are allowed):

- Sums (ROC curves, AUCs, background efficiencies, confusion matrices, calibration frequencies)
  use the signed weights. The AUC is ``sum_s sum_b w_s w_b [score_s > score_b] (ties 1/2) /
  (W_s W_b)``, computed from cumulative sums over the sorted scores; it is defined when the
  signal and the background total weights ``W_s``, ``W_b`` are both positive (with negative
  weights it may leave [0, 1]). A rejection ``1 / eff_bkg`` is defined when the background total
  weight and the weight passing the cut are both positive.
- Quantiles need a monotone cumulative distribution, so they use ``|w|``: the cut of a working
  point is the ``|w|``-weighted ``1 - eff`` quantile of the signal scores (inverted-CDF
  definition, see :func:`weighted_quantile`; a row passes when its score is strictly above the
  cut), and the median and IQR of residuals are ``|w|``-weighted quantiles.

Null values: a metric that cannot be computed (a class without rows or with total weight <= 0 in
the rows evaluated, nothing passing a cut, no rows in a bin) is ``None`` (null in JSON). Every
result block carries ``null_reasons``: ``{path: reason}``, where ``path`` is the dotted path of
the null value inside the block (``model.auc_cjets_vs_rest``, ``bayes_optimal.ujets_rejection_85``,
``confusion_matrix.fractions.cjets``, ``binned.targets.mass.bias``; for arrays the reason names the
null entries) and ``reason`` names the class and where (``where``: the fold, split or sample).
:func:`warn_nulls` emits one :class:`NullMetricWarning` per distinct reason. Calibration bins are
the exception: a probability range no row reaches is common and expected, so a bin whose total
weight is not positive has null ``mean_predicted`` and ``observed`` explained by its own ``rows``
and ``weight`` entries, without a reason or a warning.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import numpy as np

WORKING_POINTS = (0.60, 0.70, 0.77, 0.85)
CALIBRATION_BINS = 10
BINARY_EFFICIENCIES = (0.5, 0.8, 0.9)
"""Signal (positive-class) efficiencies of a binary classifier's and its reference's background rejections."""
TOY_CLASSES = ("bjets", "cjets", "ujets")
"""The toy's classes, for which the exact LLRs ``llr_bl`` and ``llr_cl`` give the Bayes-optimal reference."""
_PROB_FLOOR = 1e-30


class MetricUndefined(ValueError):
    """A metric cannot be computed from these rows (its message is the reason)."""


class NullMetricWarning(UserWarning):
    """Some metrics are null; the message names the reason, the class and the fold, split or sample."""


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
    Weights must not be negative (pass ``|w|``); :class:`MetricUndefined` when there is no value
    with positive weight.
    """
    values = np.asarray(values, dtype=np.float64)
    w = _weights(weights, len(values))
    if np.any(w < 0):
        raise ValueError("weighted_quantile needs non-negative weights (use |w|)")
    if len(values) == 0 or w.sum() <= 0:
        raise MetricUndefined("no value with positive weight")
    order = np.argsort(values, kind="stable")
    cdf = np.cumsum(w[order]) / w.sum()
    q = np.asarray(q, dtype=np.float64)
    pos = np.searchsorted(cdf, q * (1 - 1e-12), side="left")
    return values[order][np.minimum(pos, len(values) - 1)]


def roc_curve(scores: np.ndarray, is_signal: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted (signal efficiency, background efficiency) for cuts at every distinct score, from (0, 0) to (1, 1).

    Signed weights are summed as they are; :class:`MetricUndefined` unless both totals are positive.
    """
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
        raise MetricUndefined("roc_curve needs positive signal and background weight")
    return np.r_[0.0, tp / total_s], np.r_[0.0, fp / total_b]


def auc(scores: np.ndarray, is_signal: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Exact weighted AUC: P(signal scores above background) with ties counted as one half.

    :class:`MetricUndefined` unless the signal and the background total weights are positive.
    """
    scores = np.asarray(scores, dtype=np.float64)
    sig = np.asarray(is_signal, dtype=bool)
    w = _weights(weights, len(scores))
    uniq, group = np.unique(scores, return_inverse=True)
    w_sig = np.bincount(group, weights=np.where(sig, w, 0.0), minlength=len(uniq))
    w_bkg = np.bincount(group, weights=np.where(sig, 0.0, w), minlength=len(uniq))
    total_s, total_b = w_sig.sum(), w_bkg.sum()
    if total_s <= 0 or total_b <= 0:
        raise MetricUndefined("auc needs positive signal and background weight")
    below = np.cumsum(w_bkg) - w_bkg
    return float(np.sum(w_sig * (below + 0.5 * w_bkg)) / (total_s * total_b))


def background_efficiency_at(sig_eff_targets: Sequence[float], scores: np.ndarray, signal: np.ndarray,
                             background: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Background efficiency at each target signal efficiency: the cut is the ``|w|``-weighted
    ``1 - eff`` quantile of the signal scores, the efficiency the signed background weight above
    it over the background total (:class:`MetricUndefined` when that total is not positive)."""
    scores = np.asarray(scores, dtype=np.float64)
    w = _weights(weights, len(scores))
    signal = np.asarray(signal, dtype=bool)
    background = np.asarray(background, dtype=bool)
    cuts = weighted_quantile(scores[signal], 1.0 - np.asarray(sig_eff_targets, dtype=np.float64),
                             np.abs(w[signal]))
    w_bkg, s_bkg = w[background], scores[background]
    total = w_bkg.sum()
    if total <= 0:
        raise MetricUndefined("background efficiency needs positive background weight")
    return np.array([w_bkg[s_bkg > cut].sum() for cut in np.atleast_1d(cuts)]) / total


def rejection_at(sig_eff_targets: Sequence[float], scores: np.ndarray, signal: np.ndarray,
                 background: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Background rejection ``1 / eff_bkg`` at each target signal efficiency (masks pick signal and
    background); ``inf`` where no background weight passes, negative where the passing weight is."""
    eff = background_efficiency_at(sig_eff_targets, scores, signal, background, weights)
    with np.errstate(divide="ignore"):
        return 1.0 / eff


def _class_index(class_names: Sequence[str], name: str) -> int:
    """Position of ``name`` among the class names, with a clear error."""
    names = list(class_names)
    if name not in names:
        raise ValueError(f"class {name!r} not among {names}")
    return names.index(name)


def discriminant(probs: np.ndarray, class_names: Sequence[str], signal: str,
                 fractions: Mapping[str, float] | None = None) -> np.ndarray:
    """``log(p_s / (sum_f f p_f + (1 - sum_f f) sum(p_other)))``: the umami/puma tagging discriminant.

    ``other`` are the classes neither ``signal`` nor in ``fractions``; with no fractions the
    denominator is the sum of every background probability.
    """
    p = np.maximum(np.asarray(probs, dtype=np.float64), _PROB_FLOOR)
    s = _class_index(class_names, signal)
    fractions = dict(fractions or {})
    frac_idx = {_class_index(class_names, name): float(f) for name, f in fractions.items()}
    if s in frac_idx:
        raise ValueError(f"the signal {signal!r} cannot also have a fraction")
    total = sum(frac_idx.values())
    if total > 1.0 + 1e-12:
        raise ValueError(f"fractions sum to {total}, more than 1")
    other = [i for i in range(p.shape[1]) if i != s and i not in frac_idx]
    denom = np.zeros(len(p))
    for i, f in frac_idx.items():
        denom += f * p[:, i]
    if other:
        denom += (1.0 - total) * p[:, other].sum(axis=1)
    return np.log(p[:, s]) - np.log(np.maximum(denom, _PROB_FLOOR))


def expand_binary(positive_prob: np.ndarray, class_names: Sequence[str], positive: str) -> np.ndarray:
    """Two-column probabilities in class order from the positive class's probability ``(n,)`` or ``(n, 1)``."""
    names = list(class_names)
    if len(names) != 2:
        raise ValueError(f"binary classification needs exactly 2 classes, got {names}")
    p = np.asarray(positive_prob, dtype=np.float64).reshape(-1)
    pos = _class_index(names, positive)
    out = np.empty((len(p), 2), dtype=np.float64)
    out[:, pos], out[:, 1 - pos] = p, 1.0 - p
    return out


class _Results:
    """Values of one result block and the reasons of its null values, keyed by dotted path."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.reasons: dict[str, str] = {}

    def null(self, path: str, reason: str) -> None:
        self.reasons[path] = reason

    def value(self, path: str, compute: Callable[[], float], reason: str | None = None) -> float | None:
        """``compute()`` as a float, or None with ``reason`` (or the raised MetricUndefined's) recorded."""
        if reason is not None:
            self.null(path, reason)
            return None
        try:
            result = float(compute())
        except MetricUndefined as err:
            self.null(path, f"{err} in {self.where}")
            return None
        if not np.isfinite(result):
            self.null(path, f"not finite in {self.where}")
            return None
        return result


def _class_totals(labels: np.ndarray, w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and total (signed) weight of each class index."""
    rows = np.bincount(labels, minlength=k)[:k] if len(labels) else np.zeros(k, np.int64)
    weight = np.bincount(labels, weights=w, minlength=k)[:k] if len(labels) else np.zeros(k)
    return rows, weight


def _absence(names: Sequence[str], rows: np.ndarray, weight: np.ndarray, where: str) -> dict[int, str]:
    """Reasons for the classes that cannot enter a metric: no rows, or total weight <= 0."""
    out = {}
    for i, name in enumerate(names):
        if rows[i] == 0:
            out[i] = f"class {name!r} has no rows in {where}"
        elif weight[i] <= 0:
            out[i] = f"class {name!r} has total weight {weight[i]:.6g} <= 0 in {where}"
    return out


def _scalar_metrics(results: _Results, prefix: str, labels: np.ndarray, w: np.ndarray, names: Sequence[str],
                    absent: Mapping[int, str], pair_score: Callable[[int, int], np.ndarray],
                    rest_score: Callable[[int], np.ndarray], disc_scores: Mapping[str, np.ndarray] | None,
                    disc: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Pair AUCs, one-vs-rest AUCs and (with a discriminant) rejections from the given scores."""
    out: dict[str, float | None] = {}
    k = len(names)
    for i in range(k):
        for j in range(i + 1, k):
            key = f"auc_{names[i]}_vs_{names[j]}"
            pair = (labels == i) | (labels == j)
            out[key] = results.value(f"{prefix}.{key}",
                                     lambda: auc(pair_score(i, j)[pair], labels[pair] == i, w[pair]),
                                     absent.get(i) or absent.get(j))
    for i in range(k if k > 2 else 0):
        key = f"auc_{names[i]}_vs_rest"
        rest = labels != i
        reason = absent.get(i)
        if reason is None and not rest.any():
            reason = f"no rows of a class other than {names[i]!r} in {results.where}"
        elif reason is None and w[rest].sum() <= 0:
            reason = (f"the classes other than {names[i]!r} have total weight {w[rest].sum():.6g} <= 0 "
                      f"in {results.where}")
        out[key] = results.value(f"{prefix}.{key}", lambda: auc(rest_score(i), labels == i, w), reason)
    if disc is not None and disc_scores is not None:
        s = _class_index(names, disc["signal"])
        for bkg, score in disc_scores.items():
            out.update(_rejections(results, prefix, score, labels, w, names, absent, s, _class_index(names, bkg),
                                   disc["working_points"]))
    return out


def _rejections(results: _Results, prefix: str, score: np.ndarray, labels: np.ndarray, w: np.ndarray,
                names: Sequence[str], absent: Mapping[int, str], s: int, b: int,
                working_points: Sequence[float]) -> dict[str, float | None]:
    """``<bkg>_rejection_<wp>`` of class ``b`` against the signal class ``s`` ranked by ``score``, at each
    signal efficiency of ``working_points`` (null with its reason where undefined or infinite)."""
    out: dict[str, float | None] = {}
    wps = list(working_points)
    bkg = names[b]
    keys = [f"{bkg}_rejection_{round(100 * wp)}" for wp in wps]
    reason = absent.get(s) or absent.get(b)
    if reason is None:
        try:
            eff = background_efficiency_at(wps, score, labels == s, labels == b, w)
        except MetricUndefined as err:
            reason = f"{err} in {results.where}"
    if reason is not None:
        for key in keys:
            out[key] = results.value(f"{prefix}.{key}", lambda: 0.0, reason)
        return out
    for key, wp, e in zip(keys, wps, eff):
        if e > 0:
            out[key] = 1.0 / float(e)
            continue
        why = ("no" if e == 0 else f"negative ({e:.6g} of the total)")
        out[key] = results.value(
            f"{prefix}.{key}", lambda: 0.0,
            f"{why} {bkg!r} weight passes the cut at {100 * wp:g}% {names[s]!r} efficiency "
            f"in {results.where}" + (" (rejection infinite)" if e == 0 else ""))
    return out


def _confusion(results: _Results, probs: np.ndarray, labels: np.ndarray, w: np.ndarray, names: Sequence[str],
               positive: str | None) -> dict[str, Any]:
    """Weighted confusion matrix: rows true class, columns predicted class."""
    k = len(names)
    if positive is not None:
        pos = _class_index(names, positive)
        predicted = np.where(probs[:, pos] > 0.5, pos, 1 - pos)
    else:
        predicted = np.argmax(probs, axis=1) if len(probs) else np.zeros(0, np.int64)
    matrix = np.bincount(labels * k + predicted, weights=w, minlength=k * k)[:k * k].reshape(k, k) \
        if len(labels) else np.zeros((k, k))
    fractions: dict[str, list[float] | None] = {}
    for i, name in enumerate(names):
        total = matrix[i].sum()
        if total > 0:
            fractions[name] = (matrix[i] / total).tolist()
        else:
            fractions[name] = None
            results.null(f"confusion_matrix.fractions.{name}",
                         f"class {name!r} has " + (f"total weight {total:.6g} <= 0" if (labels == i).any()
                                                  else "no rows") + f" in {results.where}")
    return {"classes": list(names), "weights": matrix.tolist(), "fractions": fractions,
            "predicted": "argmax" if positive is None else f"{positive} when p({positive}) > 0.5"}


def _calibration(results: _Results, probs: np.ndarray, labels: np.ndarray, w: np.ndarray, names: Sequence[str],
                 bins: int, classes: Sequence[int]) -> dict[str, Any]:
    """Reliability curve per class: weighted mean predicted probability and observed frequency per bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = {}
    for i in classes:
        p = probs[:, i]
        index = np.clip((p * bins).astype(np.int64), 0, bins - 1) if len(p) else np.zeros(0, np.int64)
        weight = np.bincount(index, weights=w, minlength=bins)[:bins]
        rows = np.bincount(index, minlength=bins)[:bins]
        sum_p = np.bincount(index, weights=w * p, minlength=bins)[:bins]
        sum_true = np.bincount(index, weights=w * (labels == i), minlength=bins)[:bins]
        ok = weight > 0
        mean_p = [float(sum_p[b] / weight[b]) if ok[b] else None for b in range(bins)]
        observed = [float(sum_true[b] / weight[b]) if ok[b] else None for b in range(bins)]
        out[names[i]] = {"edges": edges.tolist(), "mean_predicted": mean_p, "observed": observed,
                         "weight": weight.tolist(), "rows": rows.tolist()}
    return out


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                           weights: np.ndarray | None = None, *, where: str = "the rows evaluated",
                           discriminant_spec: Mapping[str, Any] | None = None, positive: str | None = None,
                           calibration_bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """The result block of a classifier on some rows (module docstring for every key).

    ``probs`` are ``(n, k)`` probabilities in class order (binary: expanded with
    :func:`expand_binary`, and ``positive`` names the positive class). Returns ``{"rows",
    "weight_sum", "classes": {name: {rows, weight}}, "model": {scalar metric: value or None},
    "confusion_matrix", "calibration", "null_reasons"}``.
    """
    names = list(class_names)
    k = len(names)
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if p.ndim != 2 or p.shape != (len(labels), k):
        raise ValueError(f"probabilities have shape {p.shape}, expected ({len(labels)}, {k})")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got [{labels.min()}, {labels.max()}]")
    w = _weights(weights, len(labels))
    results = _Results(where)
    rows, weight = _class_totals(labels, w, k)
    absent = _absence(names, rows, weight, where)
    logp = np.log(np.maximum(p, _PROB_FLOOR))

    def rest_score(i: int) -> np.ndarray:
        others = np.delete(p, i, axis=1).sum(axis=1)
        return logp[:, i] - np.log(np.maximum(others, _PROB_FLOOR))

    disc_scores = None
    if discriminant_spec is not None:
        d = discriminant(p, names, discriminant_spec["signal"], discriminant_spec["fractions"])
        disc_scores = {name: d for name in names if name != discriminant_spec["signal"]}
    model = _scalar_metrics(results, "model", labels, w, names, absent, lambda i, j: logp[:, i] - logp[:, j],
                            rest_score, disc_scores, discriminant_spec)
    if positive is not None:
        pos = _class_index(names, positive)
        binary = _rejections(results, "model", logp[:, pos] - logp[:, 1 - pos], labels, w, names, absent, pos,
                             1 - pos, BINARY_EFFICIENCIES)
        model.update({key: value for key, value in binary.items() if key not in model})
    calibrated = [_class_index(names, positive)] if positive is not None else list(range(k))
    return {
        "rows": int(len(labels)),
        "weight_sum": float(w.sum()),
        "classes": {name: {"rows": int(rows[i]), "weight": float(weight[i])} for i, name in enumerate(names)},
        "model": model,
        "confusion_matrix": _confusion(results, p, labels, w, names, positive),
        "calibration": _calibration(results, p, labels, w, names, calibration_bins, calibrated),
        "null_reasons": results.reasons,
    }


def toy_log_likelihoods(llr_bl: np.ndarray, llr_cl: np.ndarray) -> dict[str, np.ndarray]:
    """The toy's log-likelihoods per class relative to light jets, keyed by :data:`TOY_CLASSES`:
    ``llr_bl``, ``llr_cl`` and zeros."""
    llr_bl = np.asarray(llr_bl, dtype=np.float64)
    b, c, light = TOY_CLASSES
    return {b: llr_bl, c: np.asarray(llr_cl, dtype=np.float64), light: np.zeros(len(llr_bl))}


def bayes_metrics(llr_bl: np.ndarray, llr_cl: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  weights: np.ndarray | None = None, *, where: str = "the rows evaluated",
                  discriminant_spec: Mapping[str, Any] | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """The toy's Bayes-optimal counterparts of the ``model`` metrics of :func:`classification_metrics`
    and the reasons of their nulls (paths ``bayes_optimal.<key>``).

    Log-likelihoods relative to light jets are ``bjets: llr_bl``, ``cjets: llr_cl``, ``ujets: 0``.
    A pair ``i, j`` is ranked by ``L_i - L_j``, so every pair AUC and every rejection (signal
    against one background: ``L_s - L_bkg``) is the Neyman-Pearson optimum for that pair; a single
    discriminant can reach each only separately. Class ``i`` against the rest is ranked by its
    posterior odds ``L_i - log sum_{j != i} pi_j exp(L_j)`` with ``pi`` the weighted class
    fractions of these rows, the optimum for this mixture.
    """
    names = list(class_names)
    if sorted(names) != sorted(TOY_CLASSES):
        raise ValueError(f"bayes_metrics needs exactly the classes {', '.join(TOY_CLASSES)}; got {names}")
    labels = np.asarray(labels).astype(np.int64)
    w = _weights(weights, len(labels))
    k = len(names)
    llr = toy_log_likelihoods(llr_bl, llr_cl)
    L = np.stack([llr[name] for name in names], axis=1) if len(labels) else np.zeros((0, k))
    rows, weight = _class_totals(labels, w, k)
    absent = _absence(names, rows, weight, where)
    total = weight.sum()
    prior = np.where(weight > 0, weight / total if total > 0 else 0.0, 0.0)

    def rest_score(i: int) -> np.ndarray:
        others = [j for j in range(k) if j != i and prior[j] > 0]
        if not others:
            return L[:, i]
        terms = L[:, others] + np.log(prior[others])[None, :]
        top = terms.max(axis=1, keepdims=True)
        return L[:, i] - (top[:, 0] + np.log(np.exp(terms - top).sum(axis=1)))

    disc_scores = None
    if discriminant_spec is not None:
        s = _class_index(names, discriminant_spec["signal"])
        disc_scores = {name: L[:, s] - L[:, j] for j, name in enumerate(names) if j != s}
    results = _Results(where)
    values = _scalar_metrics(results, "bayes_optimal", labels, w, names, absent, lambda i, j: L[:, i] - L[:, j],
                             rest_score, disc_scores, discriminant_spec)
    return values, results.reasons


def reference_metrics(score: np.ndarray | None, labels: np.ndarray, class_names: Sequence[str],
                      weights: np.ndarray | None = None, *, positive: str, binary: bool,
                      where: str = "the rows evaluated",
                      reason: str | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """A reference score's counterparts of the ``model`` metrics of :func:`classification_metrics` for two
    classes, and the reasons of their nulls (paths ``reference.<key>``).

    ``score`` ranks a row as the ``positive`` class against the other (higher: more like
    ``positive``). The block holds the pair AUC ``auc_<first>_vs_<second>`` (class order, the first
    class ranked above the second: the score is negated when ``positive`` is the second) and, when
    ``binary``, ``<other>_rejection_<eff>`` at the positive-class efficiencies
    :data:`BINARY_EFFICIENCIES`, the keys the model block of a binary classifier has. With
    ``reason`` (the score cannot be read) every value is null with that reason.
    """
    names = list(class_names)
    if len(names) != 2:
        raise ValueError(f"a reference ranks one class against another: needs exactly 2 classes, got {names}")
    pos = _class_index(names, positive)
    labels = np.asarray(labels).astype(np.int64)
    w = _weights(weights, len(labels))
    results = _Results(where)
    rows, weight = _class_totals(labels, w, 2)
    absent = _absence(names, rows, weight, where)
    if reason is not None:
        absent = {0: reason, 1: reason}
        score = np.zeros(len(labels))
    score = np.asarray(score, dtype=np.float64)
    if score.shape != labels.shape:
        raise ValueError(f"the reference score has shape {score.shape}, expected {labels.shape}")
    first = score if pos == 0 else -score
    key = f"auc_{names[0]}_vs_{names[1]}"
    values: dict[str, float | None] = {
        key: results.value(f"reference.{key}", lambda: auc(first, labels == 0, w), absent.get(0) or absent.get(1))}
    if binary:
        values.update(_rejections(results, "reference", score, labels, w, names, absent, pos, 1 - pos,
                                  BINARY_EFFICIENCIES))
    return values, results.reasons


def _bin_edges(bins: Sequence[Sequence[float]]) -> np.ndarray:
    """Edges of ``[[low, high, n], ...]`` (contiguous ranges, each split into ``n`` equal bins)."""
    parts = [np.linspace(low, high, int(n) + 1) for low, high, n in bins]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0)


def _residual_summary(residual: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(median, q75 - q25) of the residuals with ``|w|``; MetricUndefined when no weight is left."""
    q25, q50, q75 = weighted_quantile(residual, [0.25, 0.5, 0.75], np.abs(w))
    return float(q50), float(q75 - q25)


def regression_metrics(pred: np.ndarray, target: np.ndarray, target_names: Sequence[str],
                       weights: np.ndarray | None = None, *, where: str = "the rows evaluated",
                       binning: tuple[str, np.ndarray, Sequence[Sequence[float]]] | None = None) -> dict[str, Any]:
    """The result block of a regression: ``{"rows", "weight_sum", "model": {bias_<t>, resolution_<t>},
    "binned" (with ``binning = (variable, values per row, [[low, high, n], ...])``), "null_reasons"}``.

    ``binned`` is ``{"variable", "edges", "rows": [per bin], "targets": {t: {"bias": [...],
    "resolution": [...]}}}``; rows outside the edges are left out of it.
    """
    names = list(target_names)
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    if pred.shape != target.shape or pred.shape[1] != len(names):
        raise ValueError(f"predictions {pred.shape} and targets {target.shape} must both be (n, {len(names)})")
    w = _weights(weights, len(pred))
    results = _Results(where)
    residual = pred - target
    model: dict[str, float | None] = {}
    for t, name in enumerate(names):
        ok = np.isfinite(residual[:, t])
        reason = f"no rows in {where}" if not ok.any() else None
        try:
            bias, resolution = _residual_summary(residual[ok, t], w[ok]) if reason is None else (None, None)
        except MetricUndefined:
            reason, bias, resolution = f"no rows with weight != 0 in {where}", None, None
        model[f"bias_{name}"] = results.value(f"model.bias_{name}", lambda: bias, reason)
        model[f"resolution_{name}"] = results.value(f"model.resolution_{name}", lambda: resolution, reason)
    out: dict[str, Any] = {"rows": int(len(pred)), "weight_sum": float(w.sum()), "model": model}
    if binning is not None:
        variable, values, bins = binning
        values = np.asarray(values, dtype=np.float64)
        edges = _bin_edges(bins)
        index = np.searchsorted(edges, values, side="right") - 1
        index[values == edges[-1]] = len(edges) - 2
        inside = (index >= 0) & (index < len(edges) - 1) & np.isfinite(values)
        n_bins = len(edges) - 1
        per_target: dict[str, dict[str, list[float | None]]] = {}
        for t, name in enumerate(names):
            bias_b: list[float | None] = []
            res_b: list[float | None] = []
            empty = []
            for b in range(n_bins):
                mask = inside & (index == b) & np.isfinite(residual[:, t])
                try:
                    bias, resolution = _residual_summary(residual[mask, t], w[mask])
                except MetricUndefined:
                    bias = resolution = None
                    empty.append(b)
                bias_b.append(bias)
                res_b.append(resolution)
            if empty:
                reason = (f"bins {', '.join(map(str, empty))} of {variable} have no rows with weight != 0 "
                          f"in {where}")
                results.null(f"binned.targets.{name}.bias", reason)
                results.null(f"binned.targets.{name}.resolution", reason)
            per_target[name] = {"bias": bias_b, "resolution": res_b}
        rows = np.bincount(index[inside], minlength=n_bins)[:n_bins]
        out["binned"] = {"variable": variable, "edges": edges.tolist(), "rows": rows.tolist(), "targets": per_target}
    out["null_reasons"] = results.reasons
    return out


def fold_summary(per_fold: Mapping[int, Mapping[str, float | None]] | Sequence[Mapping[str, float | None]],
                 reasons: Mapping[int, Mapping[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """``{metric: {mean, std, per_fold}}`` across folds, null values left out of mean and std.

    ``std`` is the sample std (0 for one value). Where some folds are null, ``reason`` says which
    (with each fold's own reason from ``reasons``: fold -> {metric: reason}, when given) and that
    mean and std are over the others; where all are, mean and std are null.
    """
    items = list(per_fold.items()) if isinstance(per_fold, Mapping) else list(enumerate(per_fold))
    if not items:
        raise ValueError("fold_summary needs at least one fold")
    keys = list(items[0][1])
    for fold, metrics in items:
        if set(metrics) != set(keys):
            raise ValueError(f"fold {fold} has metrics {sorted(metrics)}, fold {items[0][0]} has {sorted(keys)}")
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        raw = [m[key] for _, m in items]
        values = np.array([float(v) for v in raw if v is not None])
        entry: dict[str, Any] = {"per_fold": [None if v is None else float(v) for v in raw]}
        if len(values):
            entry["mean"] = float(np.mean(values))
            entry["std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        else:
            entry["mean"] = entry["std"] = None
        missing = [fold for (fold, _), v in zip(items, raw) if v is None]
        why = sorted({(reasons or {}).get(fold, {}).get(key) for fold in missing} - {None})
        detail = f" ({'; '.join(why)})" if why else ""
        if missing and len(values):
            entry["reason"] = (f"null in fold {', '.join(map(str, missing))}{detail}; "
                               "mean and std over the other folds")
        elif missing:
            entry["reason"] = f"null in every fold{detail}"
        out[key] = entry
    return out


def warn_nulls(block: Mapping[str, Any], stacklevel: int = 2) -> None:
    """One :class:`NullMetricWarning` per distinct reason among the block's ``null_reasons``."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for path, reason in block.get("null_reasons", {}).items():
        by_reason[reason].append(path)
    for reason, paths in by_reason.items():
        shown = ", ".join(paths[:6]) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
        warnings.warn(f"{reason}: null {shown}", NullMetricWarning, stacklevel=stacklevel + 1)
