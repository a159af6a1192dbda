"""Weighted ROC, AUC, rejections, discriminants, Bayes-optimal metrics and fold summaries."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.evaluate.metrics import (
    WORKING_POINTS,
    MetricUndefined,
    auc,
    bayes_metrics,
    classification_metrics,
    discriminant,
    fold_summary,
    rejection_at,
    roc_curve,
    weighted_quantile,
)

CLASSES = ["bjets", "cjets", "ujets"]


def brute_force_auc(scores, is_signal, weights):
    sig, bkg = scores[is_signal], scores[~is_signal]
    ws, wb = weights[is_signal], weights[~is_signal]
    win = (sig[:, None] > bkg[None, :]) + 0.5 * (sig[:, None] == bkg[None, :])
    return float((ws[:, None] * wb[None, :] * win).sum() / (ws.sum() * wb.sum()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_brute_force_with_weights_and_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    is_signal = rng.random(n) < 0.4
    scores = np.round(rng.normal(is_signal * 0.8, 1.0), 1)  # coarse rounding makes many ties
    weights = rng.uniform(0.1, 3.0, n)
    assert auc(scores, is_signal, weights) == pytest.approx(brute_force_auc(scores, is_signal, weights), abs=1e-12)
    assert auc(scores, is_signal) == pytest.approx(brute_force_auc(scores, is_signal, np.ones(n)), abs=1e-12)


def test_auc_matches_trapezoid_of_roc_curve():
    rng = np.random.default_rng(3)
    is_signal = rng.random(300) < 0.5
    scores = np.round(rng.normal(is_signal, 1.0), 1)
    weights = rng.uniform(0.5, 2.0, 300)
    sig_eff, bkg_eff = roc_curve(scores, is_signal, weights)
    assert sig_eff[0] == bkg_eff[0] == 0.0
    assert sig_eff[-1] == pytest.approx(1.0) and bkg_eff[-1] == pytest.approx(1.0)
    assert np.all(np.diff(sig_eff) >= 0) and np.all(np.diff(bkg_eff) >= 0)
    trapezoid = np.sum(np.diff(bkg_eff) * (sig_eff[1:] + sig_eff[:-1]) / 2)
    assert auc(scores, is_signal, weights) == pytest.approx(trapezoid, abs=1e-12)


def test_auc_of_perfect_random_inverted_and_constant_scores():
    is_signal = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = np.r_[np.linspace(2, 3, 50), np.linspace(0, 1, 50)]
    assert auc(perfect, is_signal) == 1.0
    assert auc(-perfect, is_signal) == 0.0
    assert auc(np.zeros(100), is_signal) == 0.5
    rng = np.random.default_rng(4)
    big = rng.random(20000) < 0.5
    assert auc(rng.random(20000), big) == pytest.approx(0.5, abs=0.01)


def test_auc_needs_both_classes():
    with pytest.raises(MetricUndefined):
        auc(np.arange(3.0), np.ones(3, bool))
    with pytest.raises(MetricUndefined):
        auc(np.arange(4.0), np.array([True, True, False, False]), np.array([1.0, 1.0, 1.0, -2.0]))


def test_weighted_quantile_unit_and_integer_weights():
    rng = np.random.default_rng(5)
    values = rng.normal(size=37)
    qs = np.array([0.0, 0.15, 0.3, 0.5, 0.77, 1.0])
    assert np.array_equal(weighted_quantile(values, qs), np.quantile(values, qs, method="inverted_cdf"))
    counts = rng.integers(1, 5, size=37)
    repeated = np.repeat(values, counts)
    assert np.array_equal(weighted_quantile(values, qs, counts.astype(float)),
                          np.quantile(repeated, qs, method="inverted_cdf"))
    # the median of {1 (weight 3), 2 (weight 1)} is 1; of {1 (weight 1), 2 (weight 3)} it is 2
    assert weighted_quantile([1.0, 2.0], 0.5, [3.0, 1.0]) == 1.0
    assert weighted_quantile([1.0, 2.0], 0.5, [1.0, 3.0]) == 2.0


def test_rejection_at_working_points_by_hand():
    # 10 signal jets scored 1..10, 10 background jets scored 0.5, 1.5, ..., 9.5 (weight 1 each)
    sig_scores = np.arange(1.0, 11.0)
    bkg_scores = np.arange(0.5, 10.0, 1.0)
    scores = np.r_[sig_scores, bkg_scores]
    signal = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    # eff 0.7 -> cut = 0.3 quantile of signal = 3 -> signal > 3 is 7/10; background > 3 is 3.5..9.5 = 7/10
    # eff 0.2 -> cut = 8 -> background 8.5, 9.5 pass = 2/10 -> rejection 5
    rej = rejection_at([0.7, 0.2], scores, signal, ~signal)
    assert rej.tolist() == pytest.approx([10 / 7, 5.0])
    # weight 4 on the two background jets above 8: total 8 + 2 * 4 = 16, passing 8 -> rejection 2
    weights = np.ones(20)
    weights[10:][bkg_scores > 8] = 4.0
    rej_w = rejection_at([0.2], scores, signal, ~signal, weights)
    assert rej_w[0] == pytest.approx(16.0 / 8.0)


def test_rejection_at_uses_weighted_signal_quantile_and_reports_inf():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    signal = np.array([True, True, True, True, False])
    weights = np.array([1.0, 1.0, 1.0, 7.0, 1.0])
    # 70% efficiency: cut = 0.3 quantile of signal with weights (1,1,1,7)/10 -> 3; only score 4 (70%) passes
    assert rejection_at([0.7], scores, signal, ~signal, weights)[0] == np.inf


def probs_from_logits(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def test_discriminant_monotonic_in_signal_and_antimonotonic_in_backgrounds():
    rng = np.random.default_rng(6)
    base = probs_from_logits(rng.normal(size=(200, 3)))
    d = discriminant(base, CLASSES, "bjets", {"cjets": 0.05})
    more_b = base * np.array([2.0, 1.0, 1.0])
    more_c = base * np.array([1.0, 2.0, 1.0])
    more_u = base * np.array([1.0, 1.0, 2.0])
    assert np.all(discriminant(more_b, CLASSES, "bjets", {"cjets": 0.05}) > d)
    assert np.all(discriminant(more_c, CLASSES, "bjets", {"cjets": 0.05}) < d)
    assert np.all(discriminant(more_u, CLASSES, "bjets", {"cjets": 0.05}) < d)
    # f_c = 0 is the b-vs-light log ratio, f_c = 1 the b-vs-c log ratio
    assert np.allclose(discriminant(base, CLASSES, "bjets", {"cjets": 0.0}), np.log(base[:, 0] / base[:, 2]))
    assert np.allclose(discriminant(base, CLASSES, "bjets", {"cjets": 1.0}), np.log(base[:, 0] / base[:, 1]))
    # class order does not matter
    perm = [2, 0, 1]
    assert np.allclose(discriminant(base[:, perm], [CLASSES[i] for i in perm], "bjets", {"cjets": 0.05}), d)
    # c-tagging: signal cjets with bjets as the fraction class
    dc = discriminant(base, CLASSES, "cjets", {"bjets": 0.3})
    assert np.allclose(dc, np.log(base[:, 1] / (0.3 * base[:, 0] + 0.7 * base[:, 2])))
    # no fractions: the signal against the sum of every background
    assert np.allclose(discriminant(base, CLASSES, "bjets"), np.log(base[:, 0] / (base[:, 1] + base[:, 2])))
    with pytest.raises(ValueError):
        discriminant(base, ["b", "c", "u"], "bjets")
    with pytest.raises(ValueError):
        discriminant(base, CLASSES, "bjets", {"cjets": 0.7, "ujets": 0.5})


def test_discriminant_with_four_classes_and_two_fractions():
    rng = np.random.default_rng(16)
    names = ["hbb", "top", "wz", "qcd"]
    p = probs_from_logits(rng.normal(size=(100, 4)))
    d = discriminant(p, names, "hbb", {"top": 0.25, "wz": 0.15})
    assert np.allclose(d, np.log(p[:, 0] / (0.25 * p[:, 1] + 0.15 * p[:, 2] + 0.6 * p[:, 3])))
    # every background with a fraction: no remainder term
    d_all = discriminant(p, names, "hbb", {"top": 0.5, "wz": 0.25, "qcd": 0.25})
    assert np.allclose(d_all, np.log(p[:, 0] / (0.5 * p[:, 1] + 0.25 * p[:, 2] + 0.25 * p[:, 3])))


DISC = {"signal": "bjets", "fractions": {"cjets": 0.05}, "working_points": list(WORKING_POINTS)}


def flavour(probs, labels, weights, fc=0.05, **kw):
    """The model metrics of a b-tagger with f_c = ``fc``."""
    spec = {**DISC, "fractions": {"cjets": fc}}
    return classification_metrics(probs, labels, CLASSES, weights, discriminant_spec=spec, **kw)["model"]


def bayes(llr_bl, llr_cl, labels, weights, names=CLASSES):
    values, reasons = bayes_metrics(llr_bl, llr_cl, labels, names, weights, discriminant_spec=DISC)
    assert reasons == {}
    return values


def gaussian_toy(n=6000, seed=7):
    """Three classes in 2-d with unit covariance: the log-likelihood ratios are linear in x."""
    rng = np.random.default_rng(seed)
    means = np.array([[1.5, 1.0], [0.7, -0.5], [0.0, 0.0]])  # bjets, cjets, ujets
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2)) + means[labels]
    loglik = x @ means.T - 0.5 * np.sum(means ** 2, axis=1)  # up to a common constant
    llr_bl = loglik[:, 0] - loglik[:, 2]
    llr_cl = loglik[:, 1] - loglik[:, 2]
    weights = rng.uniform(0.5, 1.5, n)
    return llr_bl, llr_cl, labels, weights


def test_bayes_metrics_keys_match_the_model_metrics():
    llr_bl, llr_cl, labels, weights = gaussian_toy()
    probs = probs_from_logits(np.stack([llr_bl, llr_cl, np.zeros_like(llr_bl)], axis=1))
    reference = bayes(llr_bl, llr_cl, labels, weights)
    model = flavour(probs, labels, weights)
    assert set(reference) == set(model)
    expected = {"auc_bjets_vs_cjets", "auc_bjets_vs_ujets", "auc_cjets_vs_ujets"}
    expected |= {f"auc_{c}_vs_rest" for c in CLASSES}
    expected |= {f"{c}_rejection_{round(100 * wp)}" for c in ("cjets", "ujets") for wp in WORKING_POINTS}
    assert set(reference) == expected
    assert [round(100 * wp) for wp in WORKING_POINTS] == [60, 70, 77, 85]
    # without a discriminant there are no rejections
    plain = classification_metrics(probs, labels, CLASSES, weights)["model"]
    assert set(plain) == {k for k in expected if k.startswith("auc_")}


def test_model_using_the_llr_matches_bayes_metrics_exactly():
    llr_bl, llr_cl, labels, weights = gaussian_toy()
    priors = np.log(np.array([0.2, 0.3, 0.5]))
    probs = probs_from_logits(np.stack([llr_bl, llr_cl, np.zeros_like(llr_bl)], axis=1) + priors)
    reference = bayes(llr_bl, llr_cl, labels, weights)
    # pair AUCs rank by log(p_i / p_j) = llr_ij + constant, whatever the fractions are
    model = flavour(probs, labels, weights)
    for key in ("auc_bjets_vs_cjets", "auc_bjets_vs_ujets", "auc_cjets_vs_ujets"):
        assert model[key] == pytest.approx(reference[key], abs=1e-14)
    # f_c = 0 makes D_b the b-vs-light LLR, f_c = 1 the b-vs-c LLR (each plus a constant)
    light = flavour(probs, labels, weights, fc=0.0)
    charm = flavour(probs, labels, weights, fc=1.0)
    for wp in (60, 70, 77, 85):
        assert light[f"ujets_rejection_{wp}"] == reference[f"ujets_rejection_{wp}"]
        assert charm[f"cjets_rejection_{wp}"] == reference[f"cjets_rejection_{wp}"]


def test_bayes_one_vs_rest_is_the_posterior_with_the_rows_class_fractions():
    llr_bl, llr_cl, labels, weights = gaussian_toy()
    fractions = np.bincount(labels, weights=weights) / weights.sum()
    # a model whose probabilities are the exact posteriors for this mixture reaches the reference
    probs = probs_from_logits(np.stack([llr_bl, llr_cl, np.zeros_like(llr_bl)], axis=1) + np.log(fractions))
    model = flavour(probs, labels, weights)
    reference = bayes(llr_bl, llr_cl, labels, weights)
    for name in CLASSES:
        assert model[f"auc_{name}_vs_rest"] == pytest.approx(reference[f"auc_{name}_vs_rest"], abs=1e-12)


def test_noisy_model_is_worse_than_bayes():
    llr_bl, llr_cl, labels, weights = gaussian_toy(n=20000)
    rng = np.random.default_rng(8)
    logits = np.stack([llr_bl, llr_cl, np.zeros_like(llr_bl)], axis=1) + rng.normal(0, 1.0, (len(labels), 3))
    noisy = flavour(probs_from_logits(logits), labels, weights, fc=0.0)
    reference = bayes(llr_bl, llr_cl, labels, weights)
    for key in ("auc_bjets_vs_cjets", "auc_bjets_vs_ujets", "auc_cjets_vs_ujets", "auc_bjets_vs_rest"):
        assert noisy[key] < reference[key] - 0.005
    for wp in (60, 70, 77, 85):
        assert noisy[f"ujets_rejection_{wp}"] < reference[f"ujets_rejection_{wp}"]


def test_bayes_metrics_follow_class_order():
    llr_bl, llr_cl, labels, weights = gaussian_toy(n=3000)
    reference = bayes(llr_bl, llr_cl, labels, weights)
    order = ["ujets", "bjets", "cjets"]
    relabel = np.array([order.index(name) for name in CLASSES])[labels]
    permuted = bayes(llr_bl, llr_cl, relabel, weights, names=order)
    # ranking u against b by log(L_u / L_b) is the b-vs-u ranking turned round: same AUC
    assert permuted["auc_ujets_vs_bjets"] == pytest.approx(reference["auc_bjets_vs_ujets"], abs=1e-12)
    assert permuted["auc_bjets_vs_cjets"] == pytest.approx(reference["auc_bjets_vs_cjets"], abs=1e-12)
    assert permuted["ujets_rejection_70"] == reference["ujets_rejection_70"]
    with pytest.raises(ValueError):
        bayes_metrics(llr_bl, llr_cl, labels, ["b", "c", "light"], weights)


def test_fold_summary_mean_std_per_fold():
    folds = [{"auc": 0.8, "rej": 10.0}, {"auc": 0.9, "rej": 20.0}, {"auc": 0.7, "rej": 30.0}]
    summary = fold_summary(folds)
    assert summary["auc"]["mean"] == pytest.approx(0.8)
    assert summary["auc"]["std"] == pytest.approx(0.1)
    assert summary["rej"]["per_fold"] == [10.0, 20.0, 30.0]
    assert summary["rej"]["std"] == pytest.approx(10.0)
    assert fold_summary([{"auc": 0.5}])["auc"] == {"mean": 0.5, "std": 0.0, "per_fold": [0.5]}
    with pytest.raises(ValueError):
        fold_summary([{"auc": 0.5}, {"rej": 1.0}])
    with pytest.raises(ValueError):
        fold_summary([])


def test_fold_summary_leaves_null_folds_out_and_says_so():
    summary = fold_summary({0: {"auc": 0.8, "rej": None}, 3: {"auc": None, "rej": None}, 4: {"auc": 0.6, "rej": None}})
    assert summary["auc"]["per_fold"] == [0.8, None, 0.6]
    assert summary["auc"]["mean"] == pytest.approx(0.7)
    assert summary["auc"]["std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert "fold 3" in summary["auc"]["reason"]
    assert summary["rej"]["mean"] is None and summary["rej"]["std"] is None
    assert summary["rej"]["reason"] == "null in every fold"
