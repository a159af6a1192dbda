"""Samples named in predict.samples: scored by the fold ensemble, never resampled or trained on."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracerflow.config import ConfigError, load_config
from tracerflow.evaluate import ensemble, ensemble_weights, read_predictions
from tracerflow.evaluate.export import onnx_missing
from tracerflow.io.model_file import load_model

from .helpers import SMALL, datasets, output_root, tracerflow

NEW = "ttbar_new"
FOLDS = (0, 2)
RUN = (*SMALL, "--set", f"samples.{NEW}.generate={{process: ttbar, n_jets: 500, events_per_file: 250}}",
       "--set", f"predict.samples=[{NEW}]", "--set", "train.epochs=1",
       "--set", f"train.folds=[{', '.join(map(str, FOLDS))}]",
       "--set", "predict.ensemble=reciprocal", "--set", "write.format=umami", "--set", "resample.plots=false",
       "--set", f"predict.export=[torchscript{'' if onnx_missing() else ', onnx'}]")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A run of the small sample, two folds of one epoch, with a third toy sample named in predict.samples."""
    work = tmp_path_factory.mktemp("predict_samples")
    tracerflow("run", *RUN, "--until", "Predict", cwd=work, check=True)
    return output_root(work)


def selected_hashes(root: Path, sample: str) -> np.ndarray:
    """Event hashes of every selected jet of ``sample``, in file and row order."""
    files = sorted((root / "selections" / sample).glob("*.h5"))
    assert files
    return np.concatenate([datasets(f)["index/hash"] for f in files])


@pytest.mark.slow
def test_predictions_cover_every_selected_jet_of_the_sample_once(root):
    pred = read_predictions(root / "predict" / f"sample_{NEW}.h5")
    assert pred["kind"] == "ensemble" and pred["split"] == f"sample_{NEW}" and pred["attrs"]["sample"] == NEW
    np.testing.assert_array_equal(pred["hash"], selected_hashes(root, NEW))
    assert np.all(pred["fold"] == -1) and np.all(pred["label"] >= 0)
    np.testing.assert_allclose(pred["pred"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_sample_predictions_are_the_fold_ensemble_of_the_models_applied_to_it(root):
    pred = read_predictions(root / "predict" / f"sample_{NEW}.h5")
    jets = datasets(root / "predict_samples" / f"{NEW}.h5")
    with h5py.File(root / "train_sample" / "train.h5") as f:
        assert f["scale_dict"][()] == jets["scale_dict"]
    probs, losses = [], []
    for fold in FOLDS:
        model, attrs = load_model(root / "train" / f"fold_{fold}" / "model.h5")
        losses.append(float(attrs["best_loss"]))
        with torch.no_grad():
            logits = model(torch.from_numpy(jets["jets/inputs"].astype(np.float32)),
                           torch.from_numpy(jets["tracks/inputs"].astype(np.float32)),
                           torch.from_numpy(jets["tracks/valid"]))
        probs.append(torch.softmax(logits, dim=1).numpy())
    expected = ensemble(probs, ensemble_weights(losses, "reciprocal"))
    np.testing.assert_allclose(pred["pred"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pred["label"], jets["jets/labels"])


@pytest.mark.slow
def test_the_sample_is_never_resampled_or_trained_on(root):
    new = set(selected_hashes(root, NEW).tolist())
    for split in ("train", "val", "test"):
        with h5py.File(root / "resample" / f"{split}.h5") as f:
            assert all(sample != NEW for sample, _ in json.loads(f.attrs["sources"]))
        with h5py.File(root / "train_sample" / f"{split}.h5") as f:
            assert new.isdisjoint(f["jets/hash"][:].tolist())


@pytest.mark.slow
def test_metrics_include_the_labelled_sample(root):
    metrics = json.loads((root / "predict" / "metrics.json").read_text())
    block = metrics["samples"][NEW]
    assert block["rows"] == len(selected_hashes(root, NEW))
    assert 0.5 < block["model"]["auc_bjets_vs_ujets"] <= 1.0 and "bayes_optimal" in block
    assert f"ensemble, sample {NEW}" in (root / "predict" / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(bool(onnx_missing()), reason="the onnx extra (onnx, onnxscript) is not installed")
def test_exported_onnx_models_give_the_sample_predictions(root):
    ort = pytest.importorskip("onnxruntime")
    jets = datasets(root / "predict_samples" / f"{NEW}.h5")
    feed = {"jets": jets["jets/inputs"].astype(np.float32), "tracks": jets["tracks/inputs"].astype(np.float32),
            "valid": jets["tracks/valid"]}
    probs, losses = [], []
    for fold in FOLDS:
        session = ort.InferenceSession(str(root / "predict" / "models" / f"fold_{fold}.onnx"),
                                       providers=["CPUExecutionProvider"])
        [logits] = session.run(None, feed)
        probs.append(torch.softmax(torch.from_numpy(logits), dim=1).numpy())
        losses.append(float(load_model(root / "train" / f"fold_{fold}" / "model.h5")[1]["best_loss"]))
    expected = read_predictions(root / "predict" / f"sample_{NEW}.h5")["pred"]
    np.testing.assert_allclose(ensemble(probs, ensemble_weights(losses, "reciprocal")), expected, rtol=1e-5, atol=1e-5)
    assert (root / "predict" / "models" / f"fold_{FOLDS[0]}.torchscript.pt").is_file()


def test_an_unknown_predict_sample_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        load_config(None, ("predict.samples=[ttbar, nosuch]",))
    assert err.value.key == "predict.samples[1]" and "'nosuch' is not a sample" in err.value.message


def test_predict_samples_must_leave_a_sample_to_train_on():
    with pytest.raises(ConfigError) as err:
        load_config(None, ("predict.samples=[ttbar, zprime]",))
    assert err.value.key == "predict.samples" and "none is left" in err.value.message
