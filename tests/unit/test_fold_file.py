"""The LUMIN fold file and FoldYielder: per-fold contents, metadata, ignored features, NaN handling."""
from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from tracerflow.io.h5target import read_root_attrs
from tracerflow.write import FoldYielder, apply_scaling, write_folds
from tracerflow.write import fold_file

from .test_train_file import N_FOLDS, concat, make_scale_dict, synthetic_chunks

CONT = ["pt", "eta", "mass"]
CAT = ["n_trk"]
MATRIX = ["d0", "z0", "dr"]


def write(path, chunks, **kw):
    options = dict(
        n_folds=N_FOLDS,
        cont_feats=CONT,
        cat_feats=CAT,
        matrix_feats=MATRIX,
        class_names=["ujets", "cjets", "bjets"],
        config_digest="digest-f",
        created_by="WriteTrainSample(split=train)",
    )
    options.update(kw)
    return write_folds(path, chunks, **options)


@pytest.fixture(scope="module")
def chunks():
    return synthetic_chunks(n=2500, chunk=600, max_tracks=15, seed=1)


@pytest.fixture(scope="module")
def whole(chunks):
    return concat(chunks)


@pytest.fixture(scope="module")
def fold_path(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("folds") / "folds.h5"
    write(path, chunks)
    return path


def raw_inputs(whole, idx):
    return np.stack([whole.jets[v][idx] for v in CONT + CAT], axis=1).astype(np.float32)


def raw_matrix(whole, idx):
    m = np.stack([whole.padded(whole.tracks[v])[idx] for v in MATRIX], axis=2).astype(np.float32)
    m[~whole.valid[idx]] = np.nan
    return m


def test_folds_hold_their_jets_in_order(fold_path, whole):
    with FoldYielder(fold_path) as fy:
        assert len(fy) == fy.n_folds == N_FOLDS
        total = 0
        for i in range(N_FOLDS):
            idx = np.flatnonzero(whole.fold == i)
            fold = fy.get_fold(i)
            np.testing.assert_array_equal(fold["hash"], whole.hash[idx])
            np.testing.assert_array_equal(fold["inputs"], raw_inputs(whole, idx))
            np.testing.assert_array_equal(fold["targets"], whole.label[idx])
            assert fold["targets"].dtype == np.int64
            np.testing.assert_array_equal(fold["weights"], whole.weight[idx].astype(np.float32))
            np.testing.assert_array_equal(fold["matrix_inputs"], raw_matrix(whole, idx))
            np.testing.assert_array_equal(fold["matrix_valid"], whole.valid[idx])
            for key in fold:
                np.testing.assert_array_equal(fy[i][key], fold[key])
            total += len(idx)
        assert total == len(whole)
    attrs = read_root_attrs(fold_path)
    assert attrs["schema"] == fold_file.SCHEMA == "tracerflow.train_folds" and attrs["schema_version"] == 1
    assert json.loads(attrs["fold_sizes"]) == np.bincount(whole.fold, minlength=N_FOLDS).tolist()


def test_meta_data_as_lumin_writes_it(fold_path, whole):
    with h5py.File(fold_path, "r") as f:
        assert json.loads(f["meta_data/cont_feats"][()]) == CONT
        assert json.loads(f["meta_data/cat_feats"][()]) == CAT
        assert json.loads(f["meta_data/targ_feats"][()]) == ["label"]
        matrix = json.loads(f["meta_data/matrix_feats"][()])
        assert matrix["feats_per_vec"] == MATRIX
        assert matrix["max_len"] == whole.max_tracks and matrix["shape"] == [whole.max_tracks, len(MATRIX)]
        assert matrix["vecs"] == [f"track_{i}" for i in range(whole.max_tracks)]
        assert matrix["present_feats"][: len(MATRIX)] == ["track_0_d0", "track_0_z0", "track_0_dr"]
        assert matrix["row_wise"] is True
        assert f["fold_0/inputs"].dtype == np.float32
    with FoldYielder(fold_path) as fy:
        assert fy.cont_feats == CONT and fy.cat_feats == CAT and fy.matrix_feats == MATRIX
        assert fy.input_feats == CONT + CAT and fy.targ_feats == ["label"] and fy.wgt_feat == "weight"


def test_ignore_feats(fold_path, whole):
    idx = np.flatnonzero(whole.fold == 2)
    with FoldYielder(fold_path, ignore_feats=["eta"]) as fy:
        assert fy.cont_feats == ["pt", "mass"] and fy.orig_cont_feats == CONT
        fold = fy.get_fold(2)
        np.testing.assert_array_equal(fold["inputs"], raw_inputs(whole, idx)[:, [0, 2, 3]])
        fy.add_ignore(["n_trk", "z0"])
        assert fy.get_ignore() == ["eta", "n_trk", "z0"] and fy.cat_feats == [] and fy.matrix_feats == ["d0", "dr"]
        fold = fy[2]
        np.testing.assert_array_equal(fold["inputs"], raw_inputs(whole, idx)[:, [0, 2]])
        np.testing.assert_array_equal(fold["matrix_inputs"], raw_matrix(whole, idx)[..., [0, 2]])
        with pytest.raises(KeyError):
            fy.add_ignore("nope")


def test_nan_to_num(fold_path, whole):
    idx = np.flatnonzero(whole.fold == 1)
    with FoldYielder(fold_path) as raw, FoldYielder(fold_path, nan_to_num=True) as clean:
        assert np.isnan(raw[1]["inputs"]).any() and np.isnan(raw[1]["matrix_inputs"]).any()
        fold = clean[1]
        assert np.isfinite(fold["inputs"]).all() and np.isfinite(fold["matrix_inputs"]).all()
        np.testing.assert_array_equal(fold["inputs"], np.nan_to_num(raw_inputs(whole, idx)))
        assert (fold["matrix_inputs"][~whole.valid[idx]] == 0).all()


def test_get_column(fold_path, whole):
    order = np.concatenate([np.flatnonzero(whole.fold == i) for i in range(N_FOLDS)])
    with FoldYielder(fold_path) as fy:
        np.testing.assert_array_equal(fy.get_column("hash"), whole.hash[order])
        first_two = order[np.isin(whole.fold[order], [0, 1])]
        np.testing.assert_array_equal(fy.get_column("weights", n_folds=2), whole.weight[first_two].astype(np.float32))
        idx = np.flatnonzero(whole.fold == 3)
        np.testing.assert_array_equal(fy.get_column("targets", fold_idx=3), whole.label[idx])
        np.testing.assert_array_equal(fy.get_column("pt", fold_idx=3), whole.jets["pt"][idx].astype(np.float32))
        assert fy.get_column("nope") is None
        with pytest.raises(IndexError):
            fy.get_fold(N_FOLDS)


def test_scaled_and_multi_target(tmp_path, chunks, whole):
    scale_dict = make_scale_dict(chunks)
    path = tmp_path / "scaled.h5"
    sizes = write(path, chunks, scale_dict=scale_dict, targ_feats=["label", "lxy"], compression="lzf")
    assert sizes == np.bincount(whole.fold, minlength=N_FOLDS).tolist()
    scaled = apply_scaling(whole, scale_dict, CONT, MATRIX)
    idx = np.flatnonzero(whole.fold == 0)
    with FoldYielder(path) as fy:
        fold = fy[0]
        np.testing.assert_array_equal(fold["inputs"][:, :3], scaled.jets[idx])
        np.testing.assert_array_equal(fold["inputs"][:, 3], whole.jets["n_trk"][idx].astype(np.float32))
        expected = scaled.tracks[idx]
        expected[~whole.valid[idx]] = np.nan
        np.testing.assert_array_equal(fold["matrix_inputs"], expected)
        assert fold["targets"].shape == (len(idx), 2) and fold["targets"].dtype == np.float32
        np.testing.assert_array_equal(fold["targets"][:, 1], whole.add_labels["lxy"][idx].astype(np.float32))
    with h5py.File(path, "r") as f:
        assert json.loads(f["meta_data/scale_dict"][()]) == json.loads(json.dumps(scale_dict))


def test_fold_ids_are_checked(tmp_path, chunks):
    with pytest.raises(ValueError, match="fold ids"):
        write(tmp_path / "x.h5", chunks, n_folds=2)
    assert not (tmp_path / "x.h5").exists()


def test_empty_folds_exist(tmp_path, chunks):
    path = tmp_path / "wide.h5"
    sizes = write(path, chunks, n_folds=N_FOLDS + 2)
    assert sizes[-2:] == [0, 0]
    with FoldYielder(path) as fy:
        assert len(fy) == N_FOLDS + 2
        assert fy[N_FOLDS + 1]["matrix_inputs"].shape == (0, 15, len(MATRIX))


def test_identical_inputs_give_identical_files(tmp_path, chunks):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write(a, chunks, compression="gzip")
    time.sleep(1.1)  # a second apart: no timestamp may differ
    write(b, chunks, compression="gzip")
    with FoldYielder(a) as fa, FoldYielder(b) as fb:
        for i in range(N_FOLDS):
            for key, value in fa[i].items():
                np.testing.assert_array_equal(value, fb[i][key])
    assert a.read_bytes() == b.read_bytes()
