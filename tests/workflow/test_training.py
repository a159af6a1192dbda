"""TrainFold and Predict through the tracerflow command: out-of-fold predictions, kFold, ContinueTraining."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tracerflow.evaluate import read_predictions
from tracerflow.io.model_file import load_model

from .helpers import SMALL, datasets, file_mtimes, output_root, tracerflow

EPOCHS = ("--set", "train.epochs=2")
N_FOLDS = 5


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One whole run (no --until) of the small sample with two epochs per fold."""
    work = tmp_path_factory.mktemp("training")
    tracerflow("run", *SMALL, *EPOCHS, cwd=work, check=True)
    return output_root(work)


@pytest.mark.slow
def test_every_fold_has_a_model_that_rebuilds_from_its_file(root):
    for fold in range(N_FOLDS):
        directory = root / "train" / f"fold_{fold}"
        model, attrs = load_model(directory / "model.h5")
        assert attrs["complete"] and attrs["fold"] == fold and attrs["epochs_run"] >= 1
        assert math.isfinite(attrs["best_loss"])
        best = torch.load(directory / "best.pt", weights_only=True)
        for key, value in model.state_dict().items():
            assert torch.equal(value, best[key]), key
        torch.load(directory / "last.pt", weights_only=True)
        epochs = (directory / "epochs.csv").read_text().splitlines()
        assert epochs[0].startswith("epoch,train_loss,val_loss") and len(epochs) == 1 + attrs["epochs_run"]


@pytest.mark.slow
def test_out_of_fold_predictions_cover_the_train_split_each_from_the_model_that_did_not_see_it(root):
    train = datasets(root / "train_sample" / "train.h5")
    oof = read_predictions(root / "predict" / "out_of_fold.h5")
    assert oof["kind"] == "out_of_fold" and len(oof["hash"]) == len(train["jets/hash"])
    for fold in range(N_FOLDS):
        rows = np.flatnonzero(train["jets/fold"] == fold)
        mine = oof["fold"] == fold
        np.testing.assert_array_equal(oof["hash"][mine], train["jets/hash"][rows])
        np.testing.assert_array_equal(oof["label"][mine], train["jets/labels"][rows])
        model, _ = load_model(root / "train" / f"fold_{fold}" / "model.h5")
        with torch.no_grad():
            jets = torch.from_numpy(train["jets/inputs"][rows[:50]].astype(np.float32))
            tracks = torch.from_numpy(train["tracks/inputs"][rows[:50]].astype(np.float32))
            valid = torch.from_numpy(train["tracks/valid"][rows[:50]])
            expected = torch.softmax(model(jets, tracks, valid), dim=1).numpy()
        np.testing.assert_allclose(oof["pred"][mine][:50], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oof["pred"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_test_split_gets_the_fold_ensemble_and_metrics_sit_beside_the_bayes_optimum(root):
    test = read_predictions(root / "predict" / "test.h5")
    assert test["kind"] == "ensemble" and test["split"] == "test"
    with h5py.File(root / "train_sample" / "test.h5") as f:
        np.testing.assert_array_equal(test["hash"], f["jets/hash"][:])
    metrics = json.loads((root / "predict" / "metrics.json").read_text())
    summary = metrics["out_of_fold"]["summary"]
    assert len(summary["auc_bjets_vs_ujets"]["per_fold"]) == N_FOLDS
    for block in (metrics["out_of_fold"]["all"], metrics["ensembles"]["test"]):
        assert set(block["model"]) == set(block["bayes_optimal"])
        assert 0.5 < block["bayes_optimal"]["auc_bjets_vs_ujets"] <= 1.0
        assert block["model"]["auc_bjets_vs_ujets"] <= block["bayes_optimal"]["auc_bjets_vs_ujets"] + 0.02
    for name in ("roc_ujets.png", "roc_cjets.png", "discriminant.png", "learning_curves.png"):
        assert (root / "predict" / "plots" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_rerun_trains_nothing(root):
    work = root.parent.parent
    before = file_mtimes(root)
    tracerflow("run", *SMALL, *EPOCHS, cwd=work, check=True)
    assert file_mtimes(root) == before


@pytest.mark.slow
def test_kfold_trains_only_the_named_folds_and_continue_training_resumes(tmp_path):
    kfold = ("--set", "train.folds=[1, 3]", "--until", "TrainFold")
    tracerflow("run", *SMALL, "--set", "train.epochs=1", *kfold, cwd=tmp_path, check=True)
    trained = output_root(tmp_path) / "train"
    assert sorted(p.name for p in trained.iterdir()) == ["fold_1", "fold_3"]
    first = (trained / "fold_1" / "epochs.csv").read_text().splitlines()
    assert len(first) == 2
    tracerflow("run", *SMALL, "--set", "train.epochs=2", "--set", "train.continue_training=true", *kfold,
               cwd=tmp_path, check=True)
    resumed = (trained / "fold_1" / "epochs.csv").read_text().splitlines()
    assert resumed[:2] == first and len(resumed) == 3
    with h5py.File(trained / "fold_1" / "model.h5") as f:
        assert f.attrs["epochs_run"] == 2 and f.attrs["complete"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_exported_torchscript_models_give_the_out_of_fold_predictions(root):
    train = datasets(root / "train_sample" / "train.h5")
    oof = read_predictions(root / "predict" / "out_of_fold.h5")
    rows = np.flatnonzero(train["jets/fold"] == 2)[:40]
    scripted = torch.jit.load(str(root / "predict" / "models" / "fold_2.torchscript.pt"))
    with torch.no_grad():
        logits = scripted(torch.from_numpy(train["jets/inputs"][rows].astype(np.float32)),
                          torch.from_numpy(train["tracks/inputs"][rows].astype(np.float32)),
                          torch.from_numpy(train["tracks/valid"][rows]))
    np.testing.assert_allclose(torch.softmax(logits, dim=1).numpy(), oof["pred"][oof["fold"] == 2][:40],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_report_is_one_self_contained_page(root):
    page = (root / "predict" / "report.html").read_text()
    for section in ("Cutflow", "Resampling", "Learning curves", "ujets rejection", "Discriminant", "Metrics"):
        assert f"<h2>{section}" in page
    assert page.count('src="data:image/png;base64,') >= 5 and "src=\"http" not in page
    assert "has_tracks" in page and "Bayes optimal" in page


@pytest.mark.slow
def test_folds_train_as_independent_tasks_on_parallel_workers(root, tmp_path):
    tracerflow("run", *SMALL, *EPOCHS, "--until", "TrainFold", "--workers", "2", cwd=tmp_path, check=True)
    for fold in range(N_FOLDS):
        ours, theirs = (r / "train" / f"fold_{fold}" / "model.h5" for r in (output_root(tmp_path), root))
        with h5py.File(ours) as a, h5py.File(theirs) as b:
            assert a.attrs["complete"] and a.attrs["fold"] == fold
            assert a.attrs["config_digest"] == b.attrs["config_digest"]
            for key in a["weights"]:
                np.testing.assert_allclose(a["weights"][key][()], b["weights"][key][()], rtol=1e-5, atol=1e-6)
