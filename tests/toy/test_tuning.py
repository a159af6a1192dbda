"""Tuning targets of the toy: a realistic, non-trivial Bayes-optimal tagger, distinct processes."""
from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp, rankdata

from tracerflow.toy import PROCESSES


def _auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Area under the ROC curve: probability that a signal jet scores above a background jet."""
    ranks = rankdata(np.concatenate([signal, background]))
    n_s, n_b = len(signal), len(background)
    return float((ranks[:n_s].sum() - n_s * (n_s + 1) / 2) / (n_s * n_b))


def _rejection(signal: np.ndarray, background: np.ndarray, efficiency: float) -> float:
    """1 / background efficiency of the cut that keeps ``efficiency`` of the signal."""
    cut = np.quantile(signal, 1.0 - efficiency)
    return 1.0 / np.mean(background > cut)


def _stack(mixed: dict[str, dict[str, np.ndarray]], name: str) -> np.ndarray:
    return np.concatenate([data[name] for data in mixed.values()])


def test_bayes_optimal_tagger_is_realistic(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    flavour = _stack(mixed, "jet_flavour")
    bl, cl = _stack(mixed, "jet_llr_bl"), _stack(mixed, "jet_llr_cl")
    b, c, light = flavour == 5, flavour == 4, flavour == 0
    assert len(flavour) >= 200_000

    rejection_77 = _rejection(bl[b], bl[light], 0.77)
    assert 20.0 <= rejection_77 <= 200.0, rejection_77
    assert 40.0 <= rejection_77 <= 130.0, rejection_77
    assert _rejection(bl[b], bl[light], 0.70) > 2.0 * rejection_77
    assert _rejection(bl[b], bl[light], 0.85) < 0.5 * rejection_77

    auc_bl, auc_cl = _auc(bl[b], bl[light]), _auc(cl[c], cl[light])
    assert 0.85 < auc_bl < 0.99, auc_bl
    assert auc_cl < auc_bl - 0.05, (auc_cl, auc_bl)
    assert auc_cl > 0.65, auc_cl
    assert _rejection(cl[c], cl[light], 0.77) < 0.1 * rejection_77


def test_processes_differ_in_pt_and_flavour(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    tt, zp = mixed["ttbar"], mixed["zprime"]
    assert np.median(zp["jet_pt"]) > 3.0 * np.median(tt["jet_pt"])
    for process, data in mixed.items():
        fractions = [np.mean(data["jet_flavour"] == label) for label in (5, 4, 0)]
        np.testing.assert_allclose(fractions, PROCESSES[process].flavour_fractions, atol=0.01)
        pt = {label: data["jet_pt"][data["jet_flavour"] == label] for label in (5, 4, 0)}
        assert pt[5].mean() > pt[4].mean() > pt[0].mean()
        assert ks_2samp(pt[5], pt[0]).pvalue < 1e-6
    assert abs(np.mean(zp["jet_flavour"] == 4) - np.mean(tt["jet_flavour"] == 4)) > 0.1
