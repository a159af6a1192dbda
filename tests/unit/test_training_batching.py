"""SortByNodes: batches of similar track count, every jet once, seeded order, trimmed padding that models ignore."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from tracerflow.models import ModelBuilder
from tracerflow.training import TrainFileDataset, batch_rows, sorted_batches, trim_tracks
from tracerflow.training.batching import track_counts

from .test_training_data import N_JET_VARS, N_JETS, N_SLOTS, N_TRACK_VARS, write_toy_train_file

SETS = {
    "deepsets": {"type": "deepsets", "phi_widths": [16, 16], "rho_widths": [16]},
    "deepsets_mean": {"type": "deepsets", "phi_widths": [16], "rho_widths": [8], "pooling": "mean"},
    "transformer": {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 2, "dim_feedforward": 32},
    "gnn": {"type": "gnn", "edge_columns": [0, 1], "hidden": 12, "n_layers": 2},
}


@pytest.fixture
def train_file(tmp_path):
    return write_toy_train_file(tmp_path / "train.h5")


def _parts(n: int, part: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Blocks of jets with prefix valid masks; ``row`` numbers the jets."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, N_SLOTS + 1, n)
    valid = np.arange(N_SLOTS)[None, :] < counts[:, None]
    tracks = np.where(valid[..., None], rng.normal(size=(n, N_SLOTS, 2)), 0.0)
    rows = np.arange(n)
    return [{"row": rows[lo:lo + part], "tracks": tracks[lo:lo + part], "valid": valid[lo:lo + part]}
            for lo in range(0, n, part)]


def test_sorted_batches_group_counts_and_shuffle_with_the_generator():
    counts = np.random.default_rng(1).integers(0, 30, 1000)
    batches = sorted_batches(counts, 64)
    assert [len(b) for b in batches] == [64] * 15 + [40]
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert all(counts[a].max() <= counts[b].min() for a, b in zip(batches, batches[1:]))
    shuffled = sorted_batches(counts, 64, np.random.default_rng(7))
    again = sorted_batches(counts, 64, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(shuffled, again))
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, batches))
    assert [len(b) for b in shuffled] != [len(b) for b in batches]


def test_trim_tracks_cuts_after_the_last_used_slot():
    valid = np.zeros((3, 6), bool)
    valid[0, :2] = valid[2, 3] = True
    arrays = {"tracks": np.ones((3, 6, 2)), "valid": valid, "jets": np.ones((3, 4))}
    trimmed = trim_tracks(arrays)
    assert trimmed["tracks"].shape == (3, 4, 2) and trimmed["valid"].shape == (3, 4) and trimmed["jets"].shape == (3, 4)
    assert trim_tracks({"tracks": np.ones((2, 6, 2)), "valid": np.zeros((2, 6), bool)})["valid"].shape == (2, 1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_rows_sorted_hold_every_row_once_in_the_plain_count(drop_last):
    n, batch_size = 1000, 64
    parts = _parts(n, 150)
    plain = list(batch_rows(parts, batch_size, drop_last=drop_last))
    nodes = list(batch_rows(parts, batch_size, drop_last=drop_last, sort_by_nodes=True,
                            rng=np.random.default_rng(3), bucket_rows=300))
    assert len(nodes) == len(plain) == (n // batch_size + (0 if drop_last else 1))
    rows = np.concatenate([b["row"] for b in nodes])
    assert len(rows) == len(set(rows.tolist())) == (n // batch_size * batch_size if drop_last else n)
    tracks = np.concatenate([p["tracks"] for p in parts])
    valid = np.concatenate([p["valid"] for p in parts])
    widths = []
    for b in nodes:
        width = b["valid"].shape[1]
        assert width == max(1, track_counts(b["valid"]).max())
        assert np.array_equal(b["tracks"], tracks[b["row"], :width])
        assert not valid[b["row"], width:].any()
        widths.append(width)
    assert np.mean(widths) < N_SLOTS
    spread = np.mean([np.ptp(track_counts(b["valid"])) for b in nodes])
    assert spread < np.mean([np.ptp(track_counts(b["valid"])) for b in plain])


def test_train_file_epochs_hold_every_jet_once_seeded_per_epoch(train_file):
    with h5py.File(train_file) as f:
        fold, tracks, valid = f["jets/fold"][:], f["tracks/inputs"][:], f["tracks/valid"][:]

    def epoch(seed: int, number: int) -> list[dict[str, torch.Tensor]]:
        data = TrainFileDataset(train_file, folds=[0, 2, 3], batch_size=128, seed=seed, block_rows=300,
                                sort_by_nodes=True, bucket_rows=900)
        data.set_epoch(number)
        batches = list(data)
        assert len(batches) == len(data)
        return batches

    batches = epoch(5, 0)
    rows = np.concatenate([b["weight"].numpy() for b in batches]).astype(np.int64)
    assert len(rows) == len(set(rows.tolist()))
    assert set(rows.tolist()) == set(np.flatnonzero(fold != 1).tolist())
    for b in batches:
        r, width = b["weight"].numpy().astype(np.int64), b["tracks"].shape[1]
        assert width == b["valid"].sum(1).max() and b["valid"].shape == (len(r), width)
        assert np.array_equal(b["tracks"].numpy(), tracks[r, :width].astype(np.float32))
        assert not valid[r, width:].any()

    def order(batches):
        return np.concatenate([b["weight"].numpy() for b in batches])

    assert np.array_equal(order(batches), order(epoch(5, 0)))
    assert not np.array_equal(order(batches), order(epoch(5, 1)))
    assert not np.array_equal(order(batches), order(epoch(6, 0)))
    with pytest.raises(ValueError, match="with_tracks"):
        TrainFileDataset(train_file, sort_by_nodes=True, with_tracks=False)


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_models_give_the_same_outputs_on_trimmed_batches(train_file, set_name):
    config = {"body": {"widths": [16]}, "tail": {"objective": "multiclass", "n_out": 3}, "set": SETS[set_name]}
    model = ModelBuilder(config, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=0).eval()
    data = TrainFileDataset(train_file, batch_size=256, seed=2, block_rows=500, sort_by_nodes=True, bucket_rows=N_JETS)
    with h5py.File(train_file) as f:
        tracks, valid = f["tracks/inputs"][:].astype(np.float32), f["tracks/valid"][:]
    narrower = 0
    with torch.no_grad():
        for batch in data:
            rows = batch["weight"].numpy().astype(np.int64)
            narrower += batch["tracks"].shape[1] < N_SLOTS
            padded = model(batch["jets"], torch.from_numpy(tracks[rows]), torch.from_numpy(valid[rows]))
            torch.testing.assert_close(model(batch["jets"], batch["tracks"], batch["valid"]), padded)
    assert narrower > 0
