"""Builders shared by the unit tests: small hand-made event batches and ROOT files."""
from __future__ import annotations

import numpy as np

from tracerflow.columns import EventBatch, Table


def make_index(n: int, first_entry: int = 0) -> dict[str, np.ndarray]:
    entries = np.arange(first_entry, first_entry + n, dtype=np.int64)
    return {
        "hash": (entries * 7919 + 13).astype(np.uint64),
        "sample": np.zeros(n, np.uint16),
        "file": np.zeros(n, np.uint16),
        "entry": entries,
    }


def small_batch() -> EventBatch:
    """Three events; jets per event [2, 0, 3]; tracks per jet [1, 2, 0, 0, 3].

    event 0: jets j0 (pt 10, eta 0.1), j1 (pt 20, eta -1.0); tracks of j0: t0; of j1: t1, t2
    event 1: no jets
    event 2: jets j2 (pt 30), j3 (pt 5), j4 (pt 15); j2, j3 no tracks; j4: t3, t4, t5
    """
    jets = Table(
        counts=np.array([2, 0, 3], np.int64),
        fields={
            "pt": np.array([10.0, 20.0, 30.0, 5.0, 15.0]),
            "eta": np.array([0.1, -1.0, 2.0, 0.5, -2.6]),
            "phi": np.array([0.0, 3.0, -3.0, 1.0, 2.0]),
            "label": np.array([0, 5, 4, 0, 5], np.int32),
        },
    )
    tracks = Table(
        counts=np.array([1, 2, 0, 0, 3], np.int64),
        fields={
            "pt": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            "d0": np.array([0.01, -0.02, 0.03, 0.5, -0.4, 0.0]),
            "eta": np.array([0.1, -1.1, -0.9, -2.5, -2.7, -2.6]),
            "phi": np.array([0.0, 3.1, 2.9, 2.0, 2.1, 1.9]),
        },
        parent="jets",
    )
    return EventBatch(
        index=make_index(3),
        event={
            "met": np.array([50.0, 60.0, 70.0]),
            "weight": np.array([1.0, 2.0, 0.5]),
            "njet_truth": np.array([2, 0, 3], np.int32),
        },
        tables={"jets": jets, "tracks": tracks},
    )


def write_root(path, branches: dict, tree: str = "nominal") -> None:
    """Write a ROOT file with one tree; jagged branches are given as awkward arrays."""
    import uproot

    with uproot.recreate(path) as f:
        f[tree] = branches


def random_batch(n_events: int, seed: int = 0, first_entry: int = 0) -> EventBatch:
    """Events with a variable number of jets (some none) and tracks per jet (some none)."""
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(0, 5, n_events)
    total_jets = int(n_jets.sum())
    n_tracks = rng.integers(0, 4, total_jets)
    total_tracks = int(n_tracks.sum())
    jets = Table(
        counts=n_jets.astype(np.int64),
        fields={
            "pt": rng.uniform(20, 200, total_jets).astype(np.float32),
            "eta": rng.uniform(-2.5, 2.5, total_jets).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, total_jets).astype(np.float32),
            "label": rng.choice(np.array([0, 4, 5], np.int32), total_jets),
        },
    )
    tracks = Table(
        counts=n_tracks.astype(np.int64),
        fields={
            "pt": rng.uniform(1, 20, total_tracks).astype(np.float32),
            "d0": rng.normal(0, 0.1, total_tracks),
            "eta": rng.uniform(-2.5, 2.5, total_tracks).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, total_tracks).astype(np.float32),
        },
        parent="jets",
    )
    return EventBatch(
        index=make_index(n_events, first_entry),
        event={
            "met": rng.uniform(0, 100, n_events).astype(np.float32),
            "weight": rng.uniform(0.5, 1.5, n_events),
            "run": rng.integers(1, 4, n_events).astype(np.int32),
        },
        tables={"jets": jets, "tracks": tracks},
    )


def assert_batches_equal(a: EventBatch, b: EventBatch) -> None:
    assert a.index.keys() == b.index.keys()
    for k in a.index:
        np.testing.assert_array_equal(a.index[k], b.index[k], err_msg=f"index/{k}")
        assert a.index[k].dtype == b.index[k].dtype, k
    assert a.event.keys() == b.event.keys()
    for k in a.event:
        np.testing.assert_array_equal(a.event[k], b.event[k], err_msg=f"event/{k}")
        assert a.event[k].dtype == b.event[k].dtype, k
    assert a.tables.keys() == b.tables.keys()
    for name in a.tables:
        ta, tb = a.tables[name], b.tables[name]
        assert ta.parent == tb.parent, name
        np.testing.assert_array_equal(ta.counts, tb.counts, err_msg=f"{name}/counts")
        assert ta.fields.keys() == tb.fields.keys(), name
        for k in ta.fields:
            np.testing.assert_array_equal(ta.fields[k], tb.fields[k], err_msg=f"{name}/{k}")
            assert ta.fields[k].dtype == tb.fields[k].dtype, (name, k)


def rows_mask(n: int, start: int, stop: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[start:stop] = True
    return mask
