"""TrainFileDataset: fold selection, batch types, seeded block shuffling and DataLoader workers."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tracerflow.training import Loader, TrainFileDataset

N_JETS, N_JET_VARS, N_SLOTS, N_TRACK_VARS, N_FOLDS = 3000, 3, 6, 4, 4


def write_toy_train_file(path, n: int = N_JETS, seed: int = 0) -> str:
    """A umami-like train file whose 3 classes separate on jets[:, 0] and the mean of tracks[..., 0]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    jets = rng.normal(size=(n, N_JET_VARS))
    jets[:, 0] += 1.5 * (labels - 1)
    tracks = rng.normal(size=(n, N_SLOTS, N_TRACK_VARS))
    tracks[:, :, 0] += (labels - 1)[:, None]
    valid = np.arange(N_SLOTS)[None, :] < rng.integers(1, N_SLOTS + 1, n)[:, None]
    tracks[~valid] = 0
    with h5py.File(path, "w") as f:
        f["jets/inputs"] = jets.astype(np.float16)
        f["jets/labels"] = labels.astype(np.int64)
        f["jets/weight"] = np.arange(n, dtype=np.float32)
        f["jets/fold"] = rng.integers(0, N_FOLDS, n).astype(np.int16)
        f["jets/hash"] = rng.integers(0, 2**63, n).astype(np.uint64)
        f["tracks/inputs"] = tracks.astype(np.float16)
        f["tracks/valid"] = valid
    return str(path)


@pytest.fixture
def train_file(tmp_path):
    return write_toy_train_file(tmp_path / "train.h5")


def _rows(batches) -> np.ndarray:
    """Row numbers of the jets yielded (the toy file's weight is the row number)."""
    return np.concatenate([b["weight"].numpy() for b in batches]).astype(np.int64)


def test_batches_have_types_shapes_and_only_the_selected_folds(train_file):
    with h5py.File(train_file) as f:
        fold = f["jets/fold"][:]
    data = TrainFileDataset(train_file, folds=[0, 1, 3], batch_size=256, seed=1, block_rows=500)
    batches = list(data)
    assert len(batches) == len(data)
    first = batches[0]
    assert set(first) == {"jets", "tracks", "valid", "label", "weight"}
    assert first["jets"].dtype == torch.float32 and first["jets"].shape == (256, N_JET_VARS)
    assert first["tracks"].dtype == torch.float32 and first["tracks"].shape == (256, N_SLOTS, N_TRACK_VARS)
    assert first["valid"].dtype == torch.bool and first["label"].dtype == torch.long
    assert all(len(b["label"]) == 256 for b in batches[:-1])
    rows = _rows(batches)
    assert len(rows) == len(set(rows)) == data.n_rows
    assert set(rows) == set(np.flatnonzero(fold != 2))
    val = _rows(TrainFileDataset(train_file, folds=[2], shuffle=False, block_rows=500))
    assert np.array_equal(val, np.flatnonzero(fold == 2))


def test_rows_match_the_file_and_jets_only_mode(train_file):
    data = TrainFileDataset(train_file, batch_size=100, shuffle=True, block_rows=300, with_tracks=False)
    batch = next(iter(data))
    assert set(batch) == {"jets", "label", "weight"}
    rows = batch["weight"].numpy().astype(np.int64)
    with h5py.File(train_file) as f:
        assert np.array_equal(batch["jets"].numpy(), f["jets/inputs"][:][rows].astype(np.float32))
        assert np.array_equal(batch["label"].numpy(), f["jets/labels"][:][rows])


def test_shuffle_is_seeded_per_epoch_and_mixes_blocks(train_file):
    def order(seed, epoch):
        data = TrainFileDataset(train_file, batch_size=128, seed=seed, block_rows=400)
        data.set_epoch(epoch)
        return _rows(data)

    assert np.array_equal(order(3, 0), order(3, 0))
    assert not np.array_equal(order(3, 0), order(3, 1))
    assert not np.array_equal(order(3, 0), order(4, 0))
    assert np.array_equal(np.sort(order(3, 1)), np.arange(N_JETS))
    assert not np.all(np.diff(order(3, 0)[:400]) > 0)


def test_drop_last_and_bad_sizes(train_file):
    data = TrainFileDataset(train_file, batch_size=1000, drop_last=True, block_rows=700)
    assert len(data) == 3 and all(len(b["label"]) == 1000 for b in data)
    with pytest.raises(ValueError, match="batch_size"):
        TrainFileDataset(train_file, batch_size=0)


def test_dataloader_workers_split_the_blocks(train_file):
    data = TrainFileDataset(train_file, folds=[1, 2], batch_size=200, seed=0, block_rows=256)
    loader = DataLoader(data, batch_size=None, num_workers=2)
    rows = _rows(loader)
    assert len(rows) == data.n_rows == len(set(rows))


def test_loader_with_workers_gives_every_jet_once_per_epoch_in_a_seeded_order(train_file):
    def epoch_rows(epoch: int) -> np.ndarray:
        loader = Loader(TrainFileDataset(train_file, folds=[0, 2], batch_size=128, seed=3, block_rows=256), workers=2)
        loader.set_epoch(epoch)
        assert len(loader) == len(loader.dataset)
        return _rows(loader)

    first = epoch_rows(0)
    assert len(first) == len(set(first)) == TrainFileDataset(train_file, folds=[0, 2]).n_rows
    assert np.array_equal(first, epoch_rows(0))
    assert not np.array_equal(first, epoch_rows(1))
    assert set(first) == set(epoch_rows(1))


def test_between_epochs_the_dataset_keeps_a_count_per_block_and_finds_its_rows_when_read(train_file):
    ds = TrainFileDataset(train_file, folds=[1, 3], batch_size=128, block_rows=500, seed=4)
    with h5py.File(train_file, "r") as f:
        fold = f["jets/fold"][:]
    assert all(isinstance(n, int) for _, n in ds._blocks)
    assert [start for start, _ in ds._blocks] == list(range(0, N_JETS, 500))
    assert [n for _, n in ds._blocks] == [int(np.isin(fold[s:s + 500], [1, 3]).sum()) for s in range(0, N_JETS, 500)]
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        rows = _rows(ds)
        assert np.array_equal(np.sort(rows), np.flatnonzero(np.isin(fold, [1, 3])))
        assert np.array_equal(_rows(ds), rows)
