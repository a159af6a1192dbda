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
