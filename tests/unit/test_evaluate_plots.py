"""Evaluation plots are PNG files whose bytes depend only on their inputs."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.evaluate.metrics import roc_curve
from tracerflow.evaluate.plots import (
    plot_binned,
    plot_calibration,
    plot_class_distributions,
    plot_learning_curves,
    plot_pred_vs_true,
    plot_roc,
    read_learning_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_same_png(first, second):
    a, b = first.read_bytes(), second.read_bytes()
    assert a.startswith(PNG_MAGIC)
    assert b"Software" not in a
    assert a == b


def toy(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    disc = rng.normal(np.array([2.0, 0.5, -1.0])[labels], 1.0)
    return disc, labels, rng.uniform(0.5, 1.5, n)


def curve(disc, labels, weights, noise, seed):
    mask = labels != 1
    score = disc[mask] + np.random.default_rng(seed).normal(0, noise, mask.sum())
    sig_eff, bkg_eff = roc_curve(score, labels[mask] == 0, weights[mask])
    with np.errstate(divide="ignore"):
        return sig_eff, 1.0 / bkg_eff


def test_plot_roc_is_deterministic(tmp_path):
    disc, labels, weights = toy()
    curves = {f"fold {k}": curve(disc, labels, weights, 0.5, k) for k in range(3)}
    curves["ensemble"] = curve(disc, labels, weights, 0.3, 9)
    curves["Bayes optimal"] = curve(disc, labels, weights, 0.0, 0)
    plot_roc(curves, tmp_path / "a" / "roc.png")
    plot_roc(curves, tmp_path / "b" / "roc.png")
    assert_same_png(tmp_path / "a" / "roc.png", tmp_path / "b" / "roc.png")


def test_plot_class_distributions_is_deterministic_and_takes_negative_weights(tmp_path):
    disc, labels, weights = toy()
    weights[::7] *= -1.0
    for name in ("a.png", "b.png"):
        plot_class_distributions(disc, labels, ["signal", "ttbar", "qcd"], weights, tmp_path / name)
    assert_same_png(tmp_path / "a.png", tmp_path / "b.png")
    # a class whose total weight is not positive is left out, not drawn with a negative area
    weights[labels == 1] = -1.0
    plot_class_distributions(disc, labels, ["signal", "ttbar", "qcd"], weights, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_calibration_pred_vs_true_and_binned_plots_are_deterministic(tmp_path):
    rng = np.random.default_rng(3)
    true = rng.normal(size=500)
    pred = true + rng.normal(0, 0.2, 500)
    signed = rng.uniform(-0.2, 1.0, 500)
    curves = {"signal": ([0.05, None, 0.5, 0.9], [0.1, None, 0.45, 0.95]), "background": ([0.1, 0.3], [0.2, 0.3])}
    for folder in ("a", "b"):
        plot_calibration(curves, tmp_path / folder / "calibration.png", title="out of fold")
        plot_pred_vs_true(pred, true, signed, tmp_path / folder / "pvt.png", name="mass")
        plot_binned([0.0, 1.0, 2.0, 4.0], {"mass": [0.1, None, -0.2]}, tmp_path / folder / "bias.png",
                    xlabel="pt", ylabel="bias")
    for name in ("calibration.png", "pvt.png", "bias.png"):
        assert_same_png(tmp_path / "a" / name, tmp_path / "b" / name)


def test_plot_learning_curves_is_deterministic(tmp_path):
    paths = []
    for fold in range(2):
        path = tmp_path / f"epochs_{fold}.csv"
        rows = ["epoch,train_loss,val_loss,lr"]
        rows += [f"{e},{1.0 / (e + 1) + 0.01 * fold},{1.1 / (e + 1) + 0.02},0.001" for e in range(5)]
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    assert read_learning_curve(paths[0])["epoch"].tolist() == [0, 1, 2, 3, 4]
    plot_learning_curves(paths, tmp_path / "lc1.png")
    plot_learning_curves(paths, tmp_path / "lc2.png")
    assert_same_png(tmp_path / "lc1.png", tmp_path / "lc2.png")


def test_learning_curve_needs_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="train_loss"):
        read_learning_curve(path)
