"""The predictions file: round trip, schema attributes, layout readable by plain h5py, validation."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tracerflow.evaluate.predictions_file import SCHEMA, SCHEMA_VERSION, read_predictions, write_predictions
from tracerflow.io.h5target import SchemaMismatch, read_root_attrs, target_status

CLASSES = ["bjets", "cjets", "ujets"]


def columns(n=50, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, 3))
    return {
        "hash": rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2),
        "pred": (p / p.sum(axis=1, keepdims=True)).astype(np.float32),
        "label": rng.integers(0, 3, n),
        "fold": rng.integers(0, 5, n),
        "weight": rng.uniform(0.5, 2.0, n),
    }


def write(path, cols, **kw):
    args = {"class_names": CLASSES, "kind": "out_of_fold", "split": "test", "config_digest": "abc",
            "created_by": "Predict(x=1)"}
    write_predictions(path, **{**cols, **args, **kw})


def test_round_trip_and_schema_attrs(tmp_path):
    path = tmp_path / "predictions.h5"
    cols = columns()
    write(path, cols, attrs={"ensemble_weights": [0.5, 0.5]})
    out = read_predictions(path)
    assert np.array_equal(out["hash"], cols["hash"]) and out["hash"].dtype == np.uint64
    assert np.array_equal(out["pred"], cols["pred"]) and out["pred"].dtype == np.float32
    assert np.array_equal(out["label"], cols["label"])
    assert np.array_equal(out["fold"], cols["fold"])
    assert np.allclose(out["weight"], cols["weight"])
    assert out["class_names"] == CLASSES
    assert out["kind"] == "out_of_fold" and out["split"] == "test"
    attrs = read_root_attrs(path)
    assert attrs["schema"] == SCHEMA == "tracerflow.predictions"
    assert attrs["schema_version"] == SCHEMA_VERSION == 1
    assert attrs["complete"] is True
    assert attrs["config_digest"] == "abc" and attrs["created_by"] == "Predict(x=1)"
    assert json.loads(attrs["ensemble_weights"]) == [0.5, 0.5]
    assert attrs["n_rows"] == 50
    assert target_status(path, "abc", SCHEMA).ok


def test_layout_is_plain_h5py(tmp_path):
    path = tmp_path / "p.h5"
    cols = columns(n=7)
    write(path, cols, kind="ensemble", fold=np.full(7, -1))
    with h5py.File(path, "r") as f:
        assert set(f) == {"index", "pred", "label", "fold", "weight"}
        assert set(f["index"]) == {"hash", "fold"}
        assert json.loads(f["pred"].attrs["names"]) == CLASSES
        assert f["pred"].shape == (7, 3)
        assert f["index/fold"][:].tolist() == [-1] * 7
        assert f.attrs["kind"] == "ensemble"


def test_validation(tmp_path):
    cols = columns(n=10)
    with pytest.raises(ValueError):
        write(tmp_path / "a.h5", cols, kind="best")
    bad = dict(cols, label=cols["label"][:5])
    with pytest.raises(ValueError):
        write(tmp_path / "b.h5", bad)
    with pytest.raises(ValueError):
        write(tmp_path / "c.h5", cols, class_names=["bjets", "ujets"])
    assert not list(tmp_path.iterdir())


def test_reader_rejects_other_schema(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "tracerflow.events"
        f.attrs["schema_version"] = 1
        f.attrs["complete"] = True
    with pytest.raises(SchemaMismatch):
        read_predictions(path)


def test_binary_file_records_objective_and_positive_class(tmp_path):
    path = tmp_path / "binary.h5"
    rng = np.random.default_rng(1)
    p = rng.random(20)
    write_predictions(path, hash=np.arange(20, dtype=np.uint64), pred=np.stack([1 - p, p], axis=1),
                      label=rng.integers(0, 2, 20), fold=np.zeros(20), weight=np.ones(20),
                      class_names=["background", "signal"], objective="binary", positive="signal",
                      kind="out_of_fold", split="train", config_digest="d", created_by="t")
    out = read_predictions(path)
    assert out["objective"] == "binary" and out["attrs"]["positive"] == "signal"
    assert out["class_names"] == ["background", "signal"]
    np.testing.assert_allclose(out["pred"][:, 1], p, rtol=1e-6)


def test_regression_file_has_targets_instead_of_labels(tmp_path):
    path = tmp_path / "regression.h5"
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    write_predictions(path, hash=np.arange(30, dtype=np.uint64), pred=pred, target=target,
                      target_names=["mass", "pt"], fold=np.full(30, -1), weight=rng.normal(size=30),
                      class_names=["all"], objective="regression", kind="ensemble", split="test",
                      config_digest="d", created_by="t")
    with h5py.File(path, "r") as f:
        assert set(f) == {"index", "pred", "target", "fold", "weight"}
        assert json.loads(f["pred"].attrs["names"]) == ["mass", "pt"]
        assert json.loads(f["target"].attrs["names"]) == ["mass", "pt"]
    out = read_predictions(path)
    assert out["objective"] == "regression" and out["target_names"] == ["mass", "pt"] and "label" not in out
    np.testing.assert_allclose(out["target"], target, rtol=1e-6)
    np.testing.assert_allclose(out["pred"], pred, rtol=1e-6)
    with pytest.raises(ValueError):
        write_predictions(tmp_path / "bad.h5", hash=np.arange(30, dtype=np.uint64), pred=pred, fold=np.zeros(30),
                          weight=np.ones(30), objective="regression", kind="ensemble", split="test",
                          config_digest="d", created_by="t")


def test_files_without_an_objective_read_as_multiclass(tmp_path):
    path = tmp_path / "old.h5"
    write(path, columns())
    with h5py.File(path, "a") as f:
        del f.attrs["objective"]
    out = read_predictions(path)
    assert out["objective"] == "multiclass" and out["class_names"] == CLASSES and "label" in out
