"""Predict on small hand-made train files and fold models: every objective, null metrics with their
reasons, negative weights, regression bias and resolution, the report's wording, stale outputs."""
from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracerflow.config import ConfigError, load_config
from tracerflow.evaluate import read_predictions
from tracerflow.evaluate.metrics import (
    NullMetricWarning,
    classification_metrics,
    regression_metrics,
    rejection_at,
    warn_nulls,
)
from tracerflow.evaluate.predict import (
    PredictSettings,
    ReportInputs,
    remove_stale_outputs,
    row_level,
    run_predict,
)
from tracerflow.evaluate.predictions_file import write_predictions
from tracerflow.io.model_file import write_model
from tracerflow.models import ModelBuilder
from tracerflow.templates.selection import SelectionTemplate
from tracerflow.write.umami_file import SCHEMA as UMAMI_SCHEMA
from tracerflow.write.umami_file import SCHEMA_VERSION as UMAMI_VERSION

N_JET_VARS = 2
JET_VARS = ["pt", "eta"]


def write_train_file(path: Path, labels, class_names, *, fold, weight=None, jets=None, targets=None,
                     target_names=(), add_labels=None, seed=0) -> Path:
    """A umami-layout train file with the datasets Predict reads, of an analysis without tracks."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(labels)
    jets = rng.normal(size=(n, N_JET_VARS)) if jets is None else np.asarray(jets)
    weight = np.ones(n) if weight is None else np.asarray(weight)
    scale_dict = {"jets": {v: {"shift": 1.0, "scale": 2.0, "log": False} for v in JET_VARS}, "tracks": {}}
    with h5py.File(path, "w") as f:
        for key, value in {"schema": UMAMI_SCHEMA, "schema_version": UMAMI_VERSION, "complete": True}.items():
            f.attrs[key] = value
        for key, value in {"class_names": list(class_names), "jet_variables": JET_VARS, "track_variables": [],
                           "track_label_names": [], "add_label_names": list(add_labels or {}),
                           "target_names": list(target_names)}.items():
            f.attrs[key] = json.dumps(value)
        f["jets/inputs"] = jets.astype(np.float32)
        f["jets/labels"] = labels.astype(np.int64)
        f["jets/weight"] = weight.astype(np.float32)
        f["jets/fold"] = np.asarray(fold).astype(np.int16)
        f["jets/hash"] = (np.arange(n, dtype=np.uint64) * np.uint64(7919) + np.uint64(seed))
        for name, values in (add_labels or {}).items():
            f[f"jets/add_labels/{name}"] = np.asarray(values, dtype=np.float32)
        if targets is not None:
            f["jets/targets"] = np.asarray(targets, dtype=np.float32).reshape(n, -1)
            f["jets/targets"].attrs["names"] = json.dumps(list(target_names))
        f["scale_dict"] = json.dumps(scale_dict)
    return path


def write_fold_model(path: Path, objective: str, n_out: int, *, weight, bias, fold: int, attrs=None) -> Path:
    """A linear model ``weight @ jets + bias`` (no hidden layers) stored as TrainFold stores it."""
    builder = ModelBuilder({"body": {"widths": []}, "tail": {"objective": objective, "n_out": n_out}},
                           n_jet_vars=N_JET_VARS)
    model = builder.build(seed=fold)
    with torch.no_grad():
        model.tail.linear.weight.copy_(torch.as_tensor(np.asarray(weight, np.float32).reshape(n_out, N_JET_VARS)))
        model.tail.linear.bias.copy_(torch.as_tensor(np.asarray(bias, np.float32).reshape(n_out)))
    write_model(path, model, builder.resolved_config, config_digest="test", created_by="test",
                attrs={"fold": fold, "best_loss": 0.5 + 0.1 * fold, **dict(attrs or {})})
    return path


def shows_infinity(page: str) -> bool:
    """Whether the page's text (images left out) shows an infinite number."""
    text = re.sub(r'src="data:[^"]*"', "", page)
    return re.search(r"\b-?inf\b|infinity", text, flags=re.IGNORECASE) is not None


def predict_dir(tmp_path, settings, models, splits, samples=None, export=(), title="analysis: tracerflow report"):
    out = tmp_path / "predict"
    metrics = run_predict(out, settings=settings, models=models, splits=splits, samples=samples or {},
                          ensemble_mode="reciprocal", batch_size=64, export_formats=list(export),
                          config_digest="digest", created_by="test", report=ReportInputs(title=title))
    return out, metrics


def three_class_setup(tmp_path, *, n=600, absent_in_fold=None, weight=None):
    """Classes signal/ttbar/qcd, 3 folds; a linear model per fold that separates them on jets[:, 0]."""
    rng = np.random.default_rng(5)
    classes = ["signal", "ttbar", "qcd"]
    labels = rng.integers(0, 3, n)
    fold = rng.integers(0, 3, n)
    if absent_in_fold is not None:
        cls, k = absent_in_fold
        fold[(labels == cls) & (fold == k)] = (k + 1) % 3
    jets = rng.normal(size=(n, 2))
    jets[:, 0] += 2.0 * (1 - labels)
    train = write_train_file(tmp_path / "train.h5", labels, classes, fold=fold, jets=jets, weight=weight)
    test_labels = rng.integers(0, 2, 200)  # the test split has no qcd at all
    test = write_train_file(tmp_path / "test.h5", test_labels, classes, fold=rng.integers(0, 3, 200), seed=1)
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "multiclass", 3, weight=[[2, 0], [0, 0], [-2, 0]],
                                  bias=[0.1 * k, 0, 0], fold=k) for k in range(3)}
    return classes, labels, fold, models, {"train": train, "test": test}


def test_a_class_absent_from_a_fold_gives_null_metrics_with_reasons_and_predict_completes(tmp_path):
    classes, labels, fold, models, splits = three_class_setup(tmp_path, absent_in_fold=(1, 2))
    settings = PredictSettings(discriminant={"signal": "signal", "fractions": {"ttbar": 0.3},
                                             "working_points": [0.5, 0.8]})
    with pytest.warns(NullMetricWarning) as record:
        out, metrics = predict_dir(tmp_path, settings, models, splits)
    messages = [str(w.message) for w in record]
    assert any("class 'ttbar' has no rows in fold 2" in m for m in messages)
    assert any("class 'qcd' has no rows in split test" in m for m in messages)
    # every predictions file is written, out of fold for every train row
    oof = read_predictions(out / "out_of_fold.h5")
    assert len(oof["hash"]) == len(labels) and sorted(np.unique(oof["fold"])) == [0, 1, 2]
    assert read_predictions(out / "test.h5")["pred"].shape == (200, 3)
    saved = json.loads((out / "metrics.json").read_text())
    fold2 = saved["out_of_fold"]["per_fold"]["2"]
    for key in ("auc_signal_vs_ttbar", "auc_ttbar_vs_qcd", "auc_ttbar_vs_rest", "ttbar_rejection_50"):
        assert fold2["model"][key] is None
        reason = fold2["null_reasons"][f"model.{key}"]
        assert "'ttbar'" in reason and "fold 2" in reason
    assert fold2["model"]["auc_signal_vs_qcd"] > 0.9  # what can be computed still is
    assert fold2["confusion_matrix"]["fractions"]["ttbar"] is None
    assert "confusion_matrix.fractions.ttbar" in fold2["null_reasons"]
    summary = saved["out_of_fold"]["summary"]["auc_signal_vs_ttbar"]
    assert summary["per_fold"][2] is None and summary["mean"] is not None and "fold 2" in summary["reason"]
    test = saved["ensembles"]["test"]
    assert test["model"]["auc_signal_vs_qcd"] is None and "split test" in test["null_reasons"]["model.auc_signal_vs_qcd"]
    assert test["model"]["auc_signal_vs_ttbar"] is not None
    page = (out / "report.html").read_text()
    assert "n/a (class &#x27;qcd&#x27; has no rows in split test)" in page
    assert not shows_infinity(page)
    assert "Bayes optimal" not in page  # no reference exists for these classes


def test_multiclass_metrics_plots_and_the_fold_ensemble(tmp_path):
    classes, labels, fold, models, splits = three_class_setup(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NullMetricWarning)  # the test split has no qcd
        out, metrics = predict_dir(tmp_path, PredictSettings(calibration_bins=5), models, splits)
    block = metrics["out_of_fold"]["all"]
    assert set(block["model"]) == {"auc_signal_vs_ttbar", "auc_signal_vs_qcd", "auc_ttbar_vs_qcd",
                                   "auc_signal_vs_rest", "auc_ttbar_vs_rest", "auc_qcd_vs_rest"}
    assert block["model"]["auc_signal_vs_qcd"] > 0.95
    assert block["null_reasons"] == {}
    assert [len(block["calibration"][c]["observed"]) for c in classes] == [5, 5, 5]
    matrix = np.array(block["confusion_matrix"]["weights"])
    assert matrix.sum() == pytest.approx(len(labels)) and matrix.shape == (3, 3)
    oof = read_predictions(out / "out_of_fold.h5")
    np.testing.assert_allclose(oof["pred"].sum(axis=1), 1.0, rtol=1e-5)
    # the confusion matrix is the weighted argmax count
    predicted = oof["pred"].argmax(axis=1)
    assert matrix[0, 0] == pytest.approx(np.sum((oof["label"] == 0) & (predicted == 0)))
    for name in ("roc_signal_vs_rest.png", "roc_qcd_vs_rest.png", "score_ttbar.png", "calibration.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "plots" / "discriminant.png").exists()
    assert metrics["objective"] == "multiclass" and metrics["classes"] == classes and metrics["discriminant"] is None


def test_binary_predictions_use_the_positive_class_of_the_model_files(tmp_path):
    rng = np.random.default_rng(9)
    n = 400
    classes = ["signal", "background"]
    labels = rng.integers(0, 2, n)
    jets = rng.normal(size=(n, 2))
    jets[:, 1] += 1.5 * labels  # background sits at large jets[:, 1]
    fold = rng.integers(0, 2, n)
    train = write_train_file(tmp_path / "train.h5", labels, classes, fold=fold, jets=jets)
    # the models score "signal", the first class: not the fallback (the last class)
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "binary", 1, weight=[0, -1.5], bias=[0.2 * k],
                                  fold=k, attrs={"positive": "signal"}) for k in range(2)}
    settings = PredictSettings(objective="binary", row_level="events")
    out, metrics = predict_dir(tmp_path, settings, models, {"train": train})
    oof = read_predictions(out / "out_of_fold.h5")
    assert oof["objective"] == "binary" and oof["attrs"]["positive"] == "signal"
    rows = np.flatnonzero(fold == 1)
    expected = 1.0 / (1.0 + np.exp(-(-1.5 * jets[rows, 1] + 0.2)))
    np.testing.assert_allclose(oof["pred"][oof["fold"] == 1, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(oof["pred"].sum(axis=1), 1.0, rtol=1e-6)
    block = metrics["out_of_fold"]["all"]
    assert metrics["positive"] == "signal"
    # with two classes one-vs-rest is the pair; binary adds the background rejections at 50, 80, 90%
    assert set(block["model"]) == {"auc_signal_vs_background", "background_rejection_50",
                                   "background_rejection_80", "background_rejection_90"}
    assert block["model"]["auc_signal_vs_background"] > 0.8
    p_signal = oof["pred"][:, 0].astype(np.float64)
    expected_rejection = rejection_at([0.5, 0.8, 0.9], np.log(p_signal) - np.log(1 - p_signal), oof["label"] == 0,
                                      oof["label"] == 1)
    for eff, value in zip((50, 80, 90), expected_rejection):
        assert block["model"][f"background_rejection_{eff}"] == pytest.approx(value, rel=1e-9)
    assert block["model"]["background_rejection_50"] > block["model"]["background_rejection_90"] > 1
    assert (out / "plots" / "roc_signal_vs_background.png").exists()
    # threshold 0.5 on p(signal)
    is_signal = oof["pred"][:, 0] > 0.5
    weights = np.array(block["confusion_matrix"]["weights"])
    assert weights[0, 0] == pytest.approx(np.sum((oof["label"] == 0) & is_signal))
    assert weights[1, 0] == pytest.approx(np.sum((oof["label"] == 1) & is_signal))
    assert list(block["calibration"]) == ["signal"]
    # without the attribute the last class is the positive one
    for k in range(2):
        write_fold_model(tmp_path / f"fold_{k}.h5", "binary", 1, weight=[0, 1.5], bias=[0.0], fold=k)
    _, metrics = predict_dir(tmp_path / "fallback", settings, models, {"train": train})
    assert metrics["positive"] == "background"
    assert metrics["out_of_fold"]["all"]["model"]["auc_signal_vs_background"] > 0.8
    assert (tmp_path / "fallback" / "predict" / "plots" / "roc_background_vs_signal.png").exists()


def test_report_names_the_analysis_classes_and_rows_and_nothing_of_flavour_tagging(tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    labels = rng.integers(0, 2, n)
    fold = rng.integers(0, 2, n)
    fold[labels == 0] = 0  # fold 1 has background only
    train = write_train_file(tmp_path / "train.h5", labels, ["signal", "background"], fold=fold)
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "binary", 1, weight=[1, 0], bias=[0], fold=k,
                                  attrs={"positive": "signal"}) for k in range(2)}
    settings = PredictSettings(objective="binary", row_level="events",
                               discriminant={"signal": "signal", "fractions": {}, "working_points": [0.7]})
    with pytest.warns(NullMetricWarning) as record:
        out, _ = predict_dir(tmp_path, settings, models, {"train": train})
    assert any("class 'signal' has no rows in fold 1" in str(w.message) for w in record)
    page = (out / "report.html").read_text()
    lower = page.lower()
    for word in ("b-jet", "bjets", "light-jet", "c-jet", "b-tagging", "jets", "flavour"):
        assert word not in lower, word
    assert "Binary classification of events into the classes signal, background" in page
    assert "The model scores p(signal)" in page
    assert "background rejection vs signal efficiency" in page
    # a metric null in fold 1: the mean of the other folds, with the reason beside it
    assert "null in fold 1 (class &#x27;signal&#x27; has no rows in fold 1)" in page
    assert "Bayes optimal" not in page and not shows_infinity(page)
    for absent in ("<h2>Cutflow", "<h2>Resampling", "<h2>Learning curves"):
        assert absent not in page  # nothing to show: no section


def test_toy_flavour_classes_with_llr_add_labels_get_the_bayes_reference(tmp_path):
    rng = np.random.default_rng(2)
    n = 900
    classes = ["bjets", "cjets", "ujets"]
    labels = rng.integers(0, 3, n)
    jets = rng.normal(size=(n, 2)) + np.array([[1.5, 1.0], [0.7, -0.5], [0.0, 0.0]])[labels]
    means = np.array([[1.5, 1.0], [0.7, -0.5], [0.0, 0.0]])
    loglik = jets @ means.T - 0.5 * np.sum(means ** 2, axis=1)
    llr = {"llr_bl": loglik[:, 0] - loglik[:, 2], "llr_cl": loglik[:, 1] - loglik[:, 2]}
    fold = rng.integers(0, 2, n)
    train = write_train_file(tmp_path / "train.h5", labels, classes, fold=fold, jets=jets, add_labels=llr)
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "multiclass", 3, weight=means, bias=[0, 0, 0], fold=k)
              for k in range(2)}
    settings = PredictSettings(discriminant={"signal": "bjets", "fractions": {"cjets": 0.05},
                                             "working_points": [0.6, 0.77]})
    out, metrics = predict_dir(tmp_path, settings, models, {"train": train})
    block = metrics["out_of_fold"]["all"]
    assert set(block["model"]) == set(block["bayes_optimal"])
    # the linear models are the exact log-likelihoods: they reach the reference on every pair
    for key in ("auc_bjets_vs_cjets", "auc_bjets_vs_ujets", "auc_cjets_vs_ujets"):
        assert block["model"][key] == pytest.approx(block["bayes_optimal"][key], abs=1e-5)
    page = (out / "report.html").read_text()
    assert "Bayes optimal (train)" in page and "ujets rejection vs bjets efficiency" in page
    assert "log(p(bjets) / (0.05&nbsp;p(cjets) + 0.95&nbsp;p(ujets)))" in page
    assert (out / "plots" / "roc_ujets.png").exists() and (out / "plots" / "discriminant.png").exists()


def test_negative_weights_do_not_crash_and_follow_the_documented_definitions():
    rng = np.random.default_rng(11)
    n = 500
    labels = rng.integers(0, 2, n)
    p1 = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0.01, 0.99)
    probs = np.stack([1 - p1, p1], axis=1)
    weights = rng.normal(1.0, 1.0, n)  # about a sixth negative
    block = classification_metrics(probs, labels, ["qcd", "signal"], weights, where="split test",
                                   discriminant_spec={"signal": "signal", "fractions": {}, "working_points": [0.5]})
    # the AUC is the signed-weight pair sum over the signed totals
    s, b = labels == 1, labels == 0
    win = (p1[s][:, None] > p1[b][None, :]) + 0.5 * (p1[s][:, None] == p1[b][None, :])
    expected = np.sum(weights[s][:, None] * weights[b][None, :] * win) / (weights[s].sum() * weights[b].sum())
    assert block["model"]["auc_qcd_vs_signal"] == pytest.approx(expected, abs=1e-12)
    assert block["model"]["qcd_rejection_50"] is not None
    # a class whose weights sum below zero: null with a reason, the rest still computed
    weights[labels == 0] = -np.abs(weights[labels == 0])
    block = classification_metrics(probs, labels, ["qcd", "signal"], weights, where="sample data")
    with pytest.warns(NullMetricWarning) as record:
        warn_nulls(block)
    assert any("class 'qcd' has total weight" in str(w.message) and "sample data" in str(w.message) for w in record)
    assert block["model"]["auc_qcd_vs_signal"] is None
    assert "sample data" in block["null_reasons"]["model.auc_qcd_vs_signal"]
    # regression quantiles use |w|
    true = rng.normal(size=n)
    residual = rng.normal(0.3, 1.0, n)
    reg = regression_metrics((true + residual)[:, None], true[:, None], ["mass"], weights)
    order = np.argsort(residual)
    cdf = np.cumsum(np.abs(weights[order])) / np.abs(weights).sum()
    assert reg["model"]["bias_mass"] == pytest.approx(residual[order][np.searchsorted(cdf, 0.5 * (1 - 1e-12))])


def test_regression_bias_and_resolution_on_a_known_function():
    # residual = b(x) + s(x) u with u evenly spread on [-1, 1]: median b(x), IQR s(x) (quartiles at +-1/2)
    u = np.linspace(-1.0, 1.0, 2001)
    x_centres = np.array([0.5, 1.5, 2.5, 3.5])
    bias, spread = 0.1 * x_centres ** 2, 0.2 + 0.1 * x_centres
    x = np.repeat(x_centres, len(u))
    residual = np.concatenate([b + s * u for b, s in zip(bias, spread)])
    true = np.sin(x) * 10
    pred = np.stack([true + residual, true - residual], axis=1)
    block = regression_metrics(pred, np.stack([true, true], axis=1), ["e", "m"], where="split test",
                               binning=("x", x, [[0.0, 2.0, 2], [2.0, 5.0, 3]]))
    binned = block["binned"]
    assert binned["edges"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and binned["rows"] == [2001] * 4 + [0]
    np.testing.assert_allclose(binned["targets"]["e"]["bias"][:4], bias, atol=1e-3)
    np.testing.assert_allclose(binned["targets"]["e"]["resolution"][:4], spread, atol=1e-3)
    np.testing.assert_allclose(binned["targets"]["m"]["bias"][:4], -bias, atol=1e-3)
    assert binned["targets"]["e"]["bias"][4] is None
    assert "bins 4 of x have no rows" in block["null_reasons"]["binned.targets.e.bias"]
    all_residuals = np.sort(residual)
    assert block["model"]["bias_e"] == pytest.approx(np.quantile(all_residuals, 0.5), abs=1e-3)
    iqr = np.quantile(all_residuals, 0.75) - np.quantile(all_residuals, 0.25)
    assert block["model"]["resolution_e"] == pytest.approx(iqr, abs=2e-3)


def test_regression_predictions_are_destandardised_per_fold_before_ensembling(tmp_path):
    rng = np.random.default_rng(12)
    n = 300
    fold = rng.integers(0, 2, n)
    jets = rng.normal(size=(n, 2))
    targets = np.stack([3.0 + jets[:, 0], -1.0 + 0.5 * jets[:, 1]], axis=1)
    pt = rng.uniform(0, 100, n)
    train = write_train_file(tmp_path / "train.h5", np.zeros(n), ["all"], fold=fold, jets=jets, targets=targets,
                             target_names=["mass", "width"], add_labels={"pt": pt})
    test = write_train_file(tmp_path / "test.h5", np.zeros(50), ["all"], fold=np.zeros(50), targets=np.ones((50, 2)),
                            target_names=["mass", "width"], add_labels={"pt": np.linspace(0, 100, 50)}, seed=3)
    transform = {0: ([1.0, 2.0], [3.0, -1.0]), 1: ([2.0, 4.0], [0.0, 0.0])}  # (scale, shift) per fold
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "regression", 2, weight=np.zeros((2, 2)),
                                  bias=[1.0, 0.5], fold=k,
                                  attrs={"targets": ["mass", "width"], "target_scale": transform[k][0],
                                         "target_shift": transform[k][1]}) for k in range(2)}
    settings = PredictSettings(objective="regression", regression_bins={"variable": "pt", "bins": [[0, 100, 4]]})
    out, metrics = predict_dir(tmp_path, settings, models, {"train": train, "test": test})
    constant = {k: np.array([1.0, 0.5]) * transform[k][0] + transform[k][1] for k in range(2)}  # [4, 0], [2, 2]
    oof = read_predictions(out / "out_of_fold.h5")
    assert oof["objective"] == "regression" and oof["target_names"] == ["mass", "width"]
    for k in range(2):
        np.testing.assert_allclose(oof["pred"][oof["fold"] == k], np.tile(constant[k], (np.sum(fold == k), 1)))
        np.testing.assert_allclose(oof["target"][oof["fold"] == k], targets[fold == k], rtol=1e-6)
    losses = np.array([0.5, 0.6])
    weights = (1 / losses) / (1 / losses).sum()
    ensemble = read_predictions(out / "test.h5")
    np.testing.assert_allclose(ensemble["pred"][0], weights[0] * constant[0] + weights[1] * constant[1], rtol=1e-6)
    block = metrics["out_of_fold"]["per_fold"][0]
    residual = constant[0][0] - targets[fold == 0, 0]
    assert block["model"]["bias_mass"] == pytest.approx(np.quantile(residual, 0.5, method="inverted_cdf"), rel=1e-6)
    assert metrics["out_of_fold"]["all"]["binned"]["variable"] == "pt"
    assert len(metrics["out_of_fold"]["all"]["binned"]["targets"]["width"]["bias"]) == 4
    assert metrics["targets"] == ["mass", "width"] and "classes" not in metrics
    for name in ("pred_vs_true_mass.png", "pred_vs_true_width.png", "bias_vs_pt.png", "resolution_vs_pt.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "Regression of mass, width; the rows are jets." in page and "Confusion" not in page


def test_stale_outputs_are_removed_and_others_kept(tmp_path, caplog):
    out = tmp_path / "predict"
    (out / "plots").mkdir(parents=True)
    (out / "models").mkdir()
    for name in ("metrics.json", "report.html", "plots/roc_old.png", "models/fold_0.torchscript.pt",
                 "models/fold_0.onnx", "models/fold_4.torchscript.pt", "models/README"):
        (out / name).write_text("x")
    p = np.full((3, 2), 0.5)
    for name in ("out_of_fold", "test", "val", "sample_old", "sample_new"):
        write_predictions(out / f"{name}.h5", hash=np.arange(3, dtype=np.uint64), pred=p, label=np.zeros(3),
                          fold=np.zeros(3), weight=np.ones(3), class_names=["a", "b"], kind="ensemble", split=name,
                          config_digest="old", created_by="old")
    with h5py.File(out / "notes.h5", "w") as f:
        f["x"] = [1]
    with caplog.at_level(logging.INFO, logger="tracerflow.evaluate.predict"):
        removed = remove_stale_outputs(out, splits=["train", "test"], samples=["new"], folds=[0, 1],
                                       export_formats=["torchscript"])
    assert sorted(p.name for p in removed.stale) == ["fold_0.onnx", "fold_4.torchscript.pt", "sample_old.h5", "val.h5"]
    assert sorted(p.name for p in removed.regenerated) == ["metrics.json", "plots", "report.html"]
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["models", "models/README", "models/fold_0.torchscript.pt", "notes.h5", "out_of_fold.h5",
                    "sample_new.h5", "test.h5"]
    assert "val.h5" in caplog.text and "no longer produces" in caplog.text


def test_predict_block_is_checked_against_the_analysis():
    cfg = load_config()
    assert cfg["predict"]["discriminant"] == {"signal": "bjets", "fractions": {"cjets": 0.05},
                                              "working_points": [0.6, 0.7, 0.77, 0.85]}
    bad = {
        "predict.discriminant.signal=tjets": "predict.discriminant.signal",
        "predict.discriminant.fractions={ujets: 0.5, cjets: 0.6}": "predict.discriminant.fractions",
        "predict.discriminant.fractions={xjets: 0.1}": "predict.discriminant.fractions.xjets",
        "predict.discriminant.working_points=[0.5, 1.2]": "predict.discriminant.working_points[1]",
        "predict.regression_bins={variable: pt, bins: [[0, 100, 4]]}": "predict.regression_bins",
        "predict.fc=0.05": "predict.fc",
    }
    for override, key in bad.items():
        with pytest.raises(ConfigError) as err:
            load_config(None, [override])
        assert err.value.key == key, (override, err.value)
    with pytest.raises(ConfigError, match="regression"):
        load_config(None, ["train.model.tail.objective=regression"])
    assert load_config(None, ["predict.discriminant=null"])["predict"]["discriminant"] is None


class MuonSelection(SelectionTemplate):
    """A Python selection template at muon level."""

    level = "muons"


def test_row_level_names_the_selection_level():
    assert row_level(load_config()) == "jets"
    assert row_level({"selection": {"template": {"level": "event"}}}) == "events"
    assert row_level({"selection": {"template": f"{__name__}:MuonSelection"}}) == "muons"
