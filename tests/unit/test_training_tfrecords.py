"""TFRecordsDataset: the train file's jets and batches, fold selection, seeded shuffling, numpy shard decoding."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from torch.utils.data import DataLoader

from tracerflow.tfrecords import read_tfrecords, write_tfrecords
from tracerflow.tfrecords.reader import load_metadata, read_shard
from tracerflow.training import TFRecordsDataset, TrainFileDataset

from .test_train_file import make_scale_dict, synthetic_chunks, write

N_JETS, CHUNK, SHARD = 2300, 700, 400
KEYS = ("jets", "tracks", "valid", "label", "weight")


@pytest.fixture(scope="module")
def train_path(tmp_path_factory):
    """A umami train file whose weights are the row numbers, so every jet can be told apart."""
    chunks = synthetic_chunks(n=N_JETS, chunk=CHUNK, max_tracks=12, seed=5)
    chunks = [dataclasses.replace(c, weight=np.arange(i * CHUNK, i * CHUNK + len(c), dtype=np.float64))
              for i, c in enumerate(chunks)]
    path = tmp_path_factory.mktemp("train") / "train.h5"
    write(path, chunks, make_scale_dict(chunks))
    return path


@pytest.fixture(scope="module", params=[None, "GZIP"])
def records(request, tmp_path_factory, train_path):
    out = tmp_path_factory.mktemp("records")
    write_tfrecords(train_path, out, chunk_size=SHARD, compression=request.param)
    return out


def _joined(batches, keys=KEYS) -> dict[str, np.ndarray]:
    """All batches of an epoch as numpy arrays, in the order they came."""
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in keys}


def _by_row(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(arrays["weight"])
    return {k: v[order] for k, v in arrays.items()}


def test_unshuffled_batches_equal_the_train_file_batches(train_path, records):
    for folds in ([0, 2, 3], [1], None):
        ours = list(TFRecordsDataset(records, folds, batch_size=256, shuffle=False))
        theirs = list(TrainFileDataset(train_path, folds, batch_size=256, shuffle=False, block_rows=500))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert set(a) == set(b) == set(KEYS)
            for k in KEYS:
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())


def test_shuffled_epochs_hold_the_fold_jets_once_and_are_seeded(train_path, records):
    folds = [0, 1, 3]
    theirs = _joined(TrainFileDataset(train_path, folds, batch_size=300, shuffle=False))

    def epoch(seed: int, number: int, **kw) -> dict[str, np.ndarray]:
        data = TFRecordsDataset(records, folds, batch_size=300, seed=seed, **kw)
        data.set_epoch(number)
        batches = list(data)
        assert len(batches) == len(data)
        return _joined(batches, KEYS if not kw.get("sort_by_nodes") else ("jets", "label", "weight"))

    first = epoch(3, 0)
    assert len(np.unique(first["weight"])) == len(first["weight"]) == len(theirs["weight"])
    for k, v in _by_row(first).items():
        np.testing.assert_array_equal(v, theirs[k])
    assert not np.all(np.diff(first["weight"]) > 0)
    assert np.array_equal(first["weight"], epoch(3, 0)["weight"])
    assert not np.array_equal(first["weight"], epoch(3, 1)["weight"])
    assert not np.array_equal(first["weight"], epoch(4, 0)["weight"])
    nodes = epoch(3, 0, sort_by_nodes=True, bucket_rows=600)
    for k, v in _by_row(nodes).items():
        np.testing.assert_array_equal(v, theirs[k])


def test_dataloader_workers_split_the_shards(records):
    data = TFRecordsDataset(records, [1, 2], batch_size=200, seed=0)
    rows = np.concatenate([b["weight"].numpy() for b in DataLoader(data, batch_size=None, num_workers=2)])
    assert len(rows) == data.n_rows == len(set(rows.tolist()))


def test_jets_only_mode_and_bad_arguments(records):
    batch = next(iter(TFRecordsDataset(records, batch_size=64, with_tracks=False)))
    assert set(batch) == {"jets", "label", "weight"} and len(batch["label"]) == 64
    with pytest.raises(ValueError, match="with_tracks"):
        TFRecordsDataset(records, with_tracks=False, sort_by_nodes=True)
    with pytest.raises(ValueError, match="batch_size"):
        TFRecordsDataset(records, batch_size=0)


def test_read_shard_equals_tf_data_and_selects_rows(records):
    pytest.importorskip("tensorflow")
    metadata = load_metadata(records)
    expected = read_tfrecords(records)
    shards = [read_shard(records, i, metadata=metadata) for i in range(metadata["n_shards"])]
    for k, v in expected.items():
        got = np.concatenate([s[k] for s in shards])
        assert got.dtype == v.dtype
        np.testing.assert_array_equal(got, v)
    rows = np.array([5, 0, 399, 17])
    picked = read_shard(records, 1, ["X_trk", "hash"], rows=rows, metadata=metadata)
    assert set(picked) == {"X_trk", "hash"}
    np.testing.assert_array_equal(picked["X_trk"], expected["X_trk"][SHARD + rows])
    np.testing.assert_array_equal(picked["hash"], expected["hash"][SHARD + rows])


def test_read_shard_rejects_a_foreign_layout(records):
    metadata = load_metadata(records)
    metadata["features"]["weight"]["shape"] = [2]
    with pytest.raises(ValueError, match="records of|layout"):
        read_shard(records, 0, metadata=metadata)
