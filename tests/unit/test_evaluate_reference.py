"""``predict.reference``: a stored score compared with the model in every metrics block, the report
and the binary ROC plot, and the config checks that keep it to analyses of two classes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracerflow.config import ConfigError, load_config
from tracerflow.evaluate.metrics import BINARY_EFFICIENCIES, auc, reference_metrics, rejection_at
from tracerflow.evaluate.predict import PredictSettings, settings_from_config

from .test_evaluate_predict import predict_dir, write_fold_model, write_train_file

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"
CLASSES = ["signal", "background"]
REJECTIONS = [f"background_rejection_{round(100 * e)}" for e in BINARY_EFFICIENCIES]


def two_gaussians(n: int, seed: int, shift: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (0 signal, 1 background), one feature (signal at -shift, background at +shift, unit
    width) and its exact log-likelihood ratio of signal to background."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.normal(size=n) + np.where(labels == 0, -shift, shift)
    llr = -2.0 * shift * x  # log N(x; -s, 1) - log N(x; s, 1)
    return labels, x, llr


def test_reference_metrics_rank_the_positive_class_above_the_other():
    labels, _, llr = two_gaussians(2000, 1)
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(labels))
    values, reasons = reference_metrics(llr, labels, CLASSES, w, positive="signal", binary=True, where="split x")
    assert reasons == {}
    assert set(values) == {"auc_signal_vs_background", *REJECTIONS}
    assert values["auc_signal_vs_background"] == pytest.approx(auc(llr, labels == 0, w), rel=1e-12)
    assert values["auc_signal_vs_background"] > 0.85  # Phi(0.8 sqrt(2)) = 0.871
    expected = rejection_at(BINARY_EFFICIENCIES, llr, labels == 0, labels == 1, w)
    for key, value in zip(REJECTIONS, expected):
        assert values[key] == pytest.approx(value, rel=1e-12)
    # the same score scoring the second class: the pair AUC keeps its class order, the rejections are
    # of the first class at the second's efficiencies; a multiclass objective has the AUC only
    flipped, _ = reference_metrics(-llr, labels, CLASSES, w, positive="background", binary=True)
    assert flipped["auc_signal_vs_background"] == pytest.approx(values["auc_signal_vs_background"], rel=1e-12)
    assert set(flipped) == {"auc_signal_vs_background", *(f"signal_rejection_{round(100 * e)}"
                                                          for e in BINARY_EFFICIENCIES)}
    only_auc, _ = reference_metrics(llr, labels, CLASSES, w, positive="signal", binary=False)
    assert only_auc == {"auc_signal_vs_background": values["auc_signal_vs_background"]}


def test_reference_metrics_are_null_with_reasons():
    labels = np.zeros(50, np.int64)  # no background
    values, reasons = reference_metrics(np.arange(50.0), labels, CLASSES, positive="signal", binary=True,
                                        where="fold 3")
    assert all(v is None for v in values.values())
    assert reasons["reference.auc_signal_vs_background"] == "class 'background' has no rows in fold 3"
    # a perfect score passes no background at any efficiency: infinite rejection, null with its reason
    labels = np.r_[np.zeros(20, np.int64), np.ones(20, np.int64)]
    values, reasons = reference_metrics(np.r_[np.ones(20), -np.ones(20)], labels, CLASSES, positive="signal",
                                        binary=True, where="split test")
    assert values["auc_signal_vs_background"] == 1.0
    assert values["background_rejection_50"] is None
    assert "rejection infinite" in reasons["reference.background_rejection_50"]
    values, reasons = reference_metrics(None, labels, CLASSES, positive="signal", binary=True,
                                        reason="the file has no add label 'llr'")
    assert all(v is None for v in values.values()) and set(reasons.values()) == {"the file has no add label 'llr'"}
    with pytest.raises(ValueError, match="exactly 2 classes"):
        reference_metrics(np.zeros(3), np.array([0, 1, 2]), ["a", "b", "c"], positive="a", binary=False)


def binary_setup(tmp_path: Path, *, reference_name: str = "llr"):
    """Two folds of a linear binary model on a noisy copy of the feature, the exact LLR as add label."""
    labels, x, llr = two_gaussians(800, 7)
    rng = np.random.default_rng(8)
    jets = np.stack([x + rng.normal(scale=1.0, size=len(x)), rng.normal(size=len(x))], axis=1)
    fold = rng.integers(0, 2, len(x))
    train = write_train_file(tmp_path / "train.h5", labels, CLASSES, fold=fold, jets=jets,
                             add_labels={reference_name: llr})
    t_labels, t_x, t_llr = two_gaussians(300, 9)
    test = write_train_file(tmp_path / "test.h5", t_labels, CLASSES, fold=rng.integers(0, 2, 300),
                            jets=np.stack([t_x + rng.normal(size=300), np.zeros(300)], axis=1),
                            add_labels={reference_name: t_llr}, seed=1)
    s_labels, s_x, s_llr = two_gaussians(400, 11)
    sample = write_train_file(tmp_path / "sample.h5", s_labels, CLASSES, fold=np.zeros(400),
                              jets=np.stack([s_x + rng.normal(size=400), np.zeros(400)], axis=1),
                              add_labels={reference_name: s_llr},
                              seed=2)
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "binary", 1, weight=[-1.0 - 0.1 * k, 0], bias=[0.0],
                                  fold=k, attrs={"positive": "signal"}) for k in range(2)}
    return {"train": train, "test": test}, {"extra": sample}, models, (labels, llr, fold)


def test_every_metrics_block_has_the_reference_beside_the_model(tmp_path):
    splits, samples, models, (labels, llr, fold) = binary_setup(tmp_path)
    settings = PredictSettings(objective="binary", row_level="events",
                               reference={"score": "llr", "name": "Bayes optimal"})
    out, metrics = predict_dir(tmp_path, settings, models, splits, samples=samples)
    assert metrics["reference"] == {"score": "llr", "name": "Bayes optimal", "positive": "signal"}
    blocks = {"all": metrics["out_of_fold"]["all"], "test": metrics["ensembles"]["test"],
              "sample": metrics["samples"]["extra"],
              **{f"fold {k}": b for k, b in metrics["out_of_fold"]["per_fold"].items()}}
    assert len(blocks) == 5
    for where, block in blocks.items():
        assert set(block["reference"]) == {"auc_signal_vs_background", *REJECTIONS}, where
        assert set(block["reference"]) <= set(block["model"]), where
        # the model sees the feature through noise (AUC Phi(0.8) = 0.79): below the exact LLR (0.87)
        assert 0.7 < block["model"]["auc_signal_vs_background"] < block["reference"]["auc_signal_vs_background"]
    # the out-of-fold reference is the LLR's own metrics on the out-of-fold rows, in their order
    rows = np.r_[np.flatnonzero(fold == 0), np.flatnonzero(fold == 1)]
    expected, _ = reference_metrics(llr[rows].astype(np.float32), labels[rows], CLASSES, positive="signal",
                                    binary=True)
    for key, value in expected.items():
        assert blocks["all"]["reference"][key] == pytest.approx(value, rel=1e-12)
    summary = metrics["out_of_fold"]["summary"]
    assert set(summary) == set(blocks["all"]["model"])
    # the report has a column named by the reference, the ROC plot a curve more than without it
    page = (out / "report.html").read_text()
    assert "<th>Bayes optimal (out of fold)</th>" in page
    assert "Reference: Bayes optimal, the stored score llr ranking signal against background" in page
    roc = (out / "plots" / "roc_signal_vs_background.png").read_bytes()
    plain_out, plain = predict_dir(tmp_path / "plain", PredictSettings(objective="binary", row_level="events"),
                                   models, splits, samples=samples)
    assert plain["reference"] is None and "reference" not in plain["out_of_fold"]["all"]
    assert "(out of fold)</th>" not in (plain_out / "report.html").read_text()
    assert (plain_out / "plots" / "roc_signal_vs_background.png").read_bytes() != roc
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["ensembles"]["test"]["reference"] == metrics["ensembles"]["test"]["reference"]


def test_a_file_without_the_reference_score_gets_null_reference_metrics(tmp_path):
    splits, samples, models, _ = binary_setup(tmp_path)
    labels, x, _ = two_gaussians(100, 3)
    splits["val"] = write_train_file(tmp_path / "val.h5", labels, CLASSES, fold=np.zeros(100),
                                     jets=np.stack([x, np.zeros(100)], axis=1), seed=3)
    settings = PredictSettings(objective="binary", reference={"score": "llr", "name": "reference"})
    with pytest.warns(UserWarning, match="no add label 'llr'"):
        out, metrics = predict_dir(tmp_path, settings, models, splits)
    block = metrics["ensembles"]["val"]
    assert all(v is None for v in block["reference"].values())
    assert block["null_reasons"]["reference.auc_signal_vs_background"] == "the file has no add label 'llr' (split val)"
    assert block["model"]["auc_signal_vs_background"] > 0.7
    assert (out / "val.h5").exists() and (out / "out_of_fold.h5").exists()


def test_two_class_multiclass_reference_ranks_the_discriminant_signal(tmp_path):
    labels, x, llr = two_gaussians(400, 5)
    fold = np.random.default_rng(6).integers(0, 2, 400)
    train = write_train_file(tmp_path / "train.h5", labels, CLASSES, fold=fold,
                             jets=np.stack([x, np.zeros(400)], axis=1), add_labels={"llr": llr})
    models = {k: write_fold_model(tmp_path / f"fold_{k}.h5", "multiclass", 2, weight=[[-1, 0], [1, 0]],
                                  bias=[0, 0], fold=k) for k in range(2)}
    disc = {"signal": "signal", "fractions": {}, "working_points": [0.5, 0.7]}
    settings = PredictSettings(discriminant=disc, reference={"score": "llr", "name": "truth"})
    out, metrics = predict_dir(tmp_path, settings, models, {"train": train})
    block = metrics["out_of_fold"]["all"]
    assert metrics["reference"]["positive"] == "signal"
    assert set(block["reference"]) == {"auc_signal_vs_background"}  # no fixed-efficiency rejections: not binary
    # the model ranks by x as the LLR does (both linear in x): the same AUC, up to ties of float32 outputs
    assert block["model"]["auc_signal_vs_background"] == pytest.approx(block["reference"]["auc_signal_vs_background"],
                                                                       abs=1e-3)
    assert set(block["model"]) == {"auc_signal_vs_background", "background_rejection_50", "background_rejection_70"}
    assert (out / "plots" / "roc_background.png").exists()
    # without a discriminant the last class is the one the score ranks high
    _, last = predict_dir(tmp_path / "last", PredictSettings(reference={"score": "llr", "name": "truth"}),
                          models, {"train": train})
    assert last["reference"]["positive"] == "background"
    assert last["out_of_fold"]["all"]["reference"]["auc_signal_vs_background"] == pytest.approx(
        1 - block["reference"]["auc_signal_vs_background"], abs=1e-12)


def test_the_reference_is_checked_against_the_analysis():
    cfg = load_config("toy-events")
    assert cfg["predict"]["reference"] == {"score": "llr_zprime", "name": "Bayes optimal"}
    assert settings_from_config(cfg).reference == {"score": "llr_zprime", "name": "Bayes optimal"}
    assert load_config("toy-events", ["predict.reference={score: llr_zprime}"])["predict"]["reference"]["name"] \
        == "reference"
    assert load_config(None)["predict"]["reference"] is None
    # two classes with a multiclass objective are fine
    two_class = load_config("toy-events", ["train.model.tail.objective=multiclass", "train.positive=null"])
    assert two_class["predict"]["reference"]["score"] == "llr_zprime"
    bad = [
        ("toy-events", ["predict.reference={score: ht}"], "predict.reference.score", "write.add_labels"),
        ("toy-events", ["predict.reference={name: x}"], "predict.reference.score", None),
        ("toy-events", ["train=null"], "predict.reference", "train block"),
        (None, ["predict.reference={score: llr_bl}"], "predict.reference", "exactly two classes"),
        (str(EXAMPLES / "zmumu_mass_regression.yaml"), ["predict.reference={score: mll}"], "predict.reference",
         "regression"),
    ]
    for config, overrides, key, message in bad:
        with pytest.raises(ConfigError) as err:
            load_config(config, overrides)
        assert err.value.key == key, (overrides, err.value)
        if message:
            assert message in str(err.value), (overrides, err.value)
