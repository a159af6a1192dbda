"""Compact tracks: the compiled padding loops, float16 counts, ragged indices and TrainChunk's views."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tracerflow.columns import ragged_index
from tracerflow.write import TrainChunk
from tracerflow.write.kernels import (
    check_fits,
    count_half_patterns,
    pad_track_rows,
    pad_tracks,
    valid_slots,
)

MAX_TRACKS = 7


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    counts = rng.integers(0, MAX_TRACKS + 1, 400)
    counts[:3] = [0, MAX_TRACKS, 0]
    return counts


def padded_reference(values: np.ndarray, counts: np.ndarray, fill) -> np.ndarray:
    """``(n, MAX_TRACKS, ...)`` built jet by jet in Python: the slow, obvious way."""
    out = np.full((len(counts), MAX_TRACKS) + values.shape[1:], fill, dtype=values.dtype)
    start = 0
    for i, c in enumerate(counts):
        out[i, :c] = values[start:start + c]
        start += c
    return out


@pytest.mark.parametrize("dtype,tail,fill", [
    (np.float16, (5,), 0), (np.float32, (), np.nan), (np.int8, (2,), -1), (np.bool_, (), False),
    (np.float64, (2, 3), 0.5), (np.int64, (), 7),
])
def test_pad_tracks_matches_the_jet_by_jet_loop(counts, dtype, tail, fill):
    rng = np.random.default_rng(1)
    values = (rng.normal(size=(int(counts.sum()),) + tail) * 20).astype(dtype)
    got = pad_tracks(values, counts, MAX_TRACKS, fill)
    expected = padded_reference(values, counts, fill)
    assert got.dtype == values.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_pad_tracks_rejects_counts_that_do_not_fit(counts):
    values = np.zeros(int(counts.sum()), np.float32)
    with pytest.raises(ValueError, match=r"add up to"):
        pad_tracks(values[1:], counts, MAX_TRACKS)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\]"):
        pad_tracks(values, counts, 3)


def test_pad_tracks_of_no_jets_and_of_jets_without_tracks():
    assert pad_tracks(np.zeros((0, 4), np.float16), np.zeros(0, int), 5).shape == (0, 5, 4)
    out = pad_tracks(np.zeros(0, np.int8), np.zeros(3, int), 4, -1)
    assert out.shape == (3, 4) and (out == -1).all()


def lookup(columns, tables, counts):
    """Track ``columns`` through ``tables``, padded into a new array."""
    out = np.empty((len(counts), MAX_TRACKS, len(columns)), tables.dtype)
    pad_track_rows(counts, MAX_TRACKS, inputs=out, columns=columns, tables=tables)
    return out


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_lookups_map_every_track_through_its_columns_table(counts, dtype):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(int(counts.sum()), 3)).astype(np.float16)
    features[::11, 1] = np.nan
    tables = rng.normal(size=(3, 1 << 16)).astype(dtype)
    got = lookup([features[:, j] for j in range(3)], tables, counts)
    mapped = np.stack([tables[j][features[:, j].view(np.uint16)] for j in range(3)], axis=1)
    np.testing.assert_array_equal(got, padded_reference(mapped, counts, 0))


def test_lookups_take_columns_of_mixed_memory_layout(counts):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(int(counts.sum()), 2)).astype(np.float16)
    tables = np.stack([np.arange(1 << 16, dtype=np.uint16).view(np.float16)] * 2)
    got = lookup([features[:, 0], np.ascontiguousarray(features[:, 1])], tables, counts)
    np.testing.assert_array_equal(got, padded_reference(features, counts, 0))


def test_label_columns_are_set_side_by_side(counts):
    rng = np.random.default_rng(6)
    n = int(counts.sum())
    columns = {"origin": rng.integers(0, 8, n).astype(np.int16), "vertex": rng.integers(-1, 5, n).astype(np.int64)}
    out = np.empty((len(counts), MAX_TRACKS, 2), np.int8)
    pad_track_rows(counts, MAX_TRACKS, labels=out, label_columns=list(columns.values()), label_fill=-1)
    stacked = np.stack([columns["origin"], columns["vertex"]], axis=1).astype(np.int8)
    np.testing.assert_array_equal(out, padded_reference(stacked, counts, -1))


def test_a_value_the_output_cannot_hold_is_named(counts):
    n = int(counts.sum())
    columns = {"origin": np.zeros(n, np.int16), "vertex": np.full(n, 200, np.int16)}
    with pytest.raises(ValueError, match=r"'vertex'.*int8.*\[200, 200\]"):
        check_fits(columns, np.dtype(np.int8))
    check_fits(columns, np.dtype(np.int16))


def test_outputs_of_another_shape_or_type_are_refused(counts):
    features = [np.zeros(int(counts.sum()), np.float16)]
    tables = np.zeros((1, 1 << 16), np.float16)
    with pytest.raises(ValueError, match="output array"):
        pad_track_rows(counts, MAX_TRACKS, inputs=np.empty((len(counts), MAX_TRACKS, 1), np.float32), columns=features,
                       tables=tables)
    with pytest.raises(ValueError, match="output array"):
        valid_slots(counts, MAX_TRACKS, out=np.empty((len(counts), MAX_TRACKS + 1), bool))


def fresh_rows(block, features, tables, label, concat=None):
    """What padding ``block`` into new buffers gives: inputs, valid and labels."""
    inputs = lookup([features[:, 0], features[:, 1]], tables, block)
    if concat is not None:
        spread = np.where(valid_slots(block, MAX_TRACKS)[:, :, None], concat[:, None, :], np.float16(0))
        inputs = np.concatenate([inputs, spread], axis=2)
    return inputs, valid_slots(block, MAX_TRACKS), pad_tracks(label.astype(np.int8), block, MAX_TRACKS, -1)[:, :, None]


@pytest.mark.parametrize("with_concat", [False, True])
def test_a_reused_buffer_is_cleared_only_where_the_last_block_left_tracks(counts, with_concat):
    """Block after block into one set of buffers with ``stale`` gives exactly what fresh buffers
    get, while slots no block ever reached are not written at all."""
    rng = np.random.default_rng(8)
    tables = rng.normal(size=(2, 1 << 16)).astype(np.float16)
    n = len(counts)
    width = 2 + (1 if with_concat else 0)
    inputs = np.zeros((n, MAX_TRACKS, width), np.float16)
    valid = np.zeros((n, MAX_TRACKS), bool)
    labels = np.full((n, MAX_TRACKS, 1), -1, np.int8)
    stale = np.zeros(n, np.int64)
    for seed in range(4):
        block = np.random.default_rng(seed).permutation(counts)[: n - 3 * seed]
        m = len(block)
        features = rng.normal(size=(int(block.sum()), 2)).astype(np.float16)
        label = rng.integers(0, 5, int(block.sum())).astype(np.int16)
        concat = rng.normal(size=(m, 1)).astype(np.float16) if with_concat else None
        assert pad_track_rows(block, MAX_TRACKS, stale[:m], inputs=inputs[:m], columns=[features[:, 0], features[:, 1]],
                              tables=tables, concat=concat, valid=valid[:m], labels=labels[:m],
                              label_columns=[label]) == -1
        np.testing.assert_array_equal(stale[:m], block)
        for got, expected in zip((inputs[:m], valid[:m], labels[:m]), fresh_rows(block, features, tables, label, concat)):
            np.testing.assert_array_equal(got, expected)
    untouched = np.full((n, MAX_TRACKS, 1), 123, np.float16)
    pad_track_rows(np.zeros(n, int), MAX_TRACKS, np.zeros(n, np.int64), inputs=untouched,
                   columns=[np.zeros(0, np.float16)], tables=np.zeros((1, 1 << 16), np.float16))
    assert (untouched == 123).all()
    with pytest.raises(ValueError, match="stale"):
        pad_track_rows(counts, MAX_TRACKS, np.full(n, MAX_TRACKS + 1), valid=valid)
    with pytest.raises(ValueError, match="only a store to a file"):
        pad_track_rows(counts, MAX_TRACKS, stale[:10], valid=valid[:10])


def test_copied_columns_are_padded_like_looked_up_ones(counts):
    rng = np.random.default_rng(9)
    scaled = rng.normal(size=(int(counts.sum()), 2)).astype(np.float32)
    out = np.empty((len(counts), MAX_TRACKS, 2), np.float32)
    pad_track_rows(counts, MAX_TRACKS, inputs=out, columns=[scaled[:, 0], scaled[:, 1]])
    np.testing.assert_array_equal(out, padded_reference(scaled, counts, 0))
    with pytest.raises(ValueError, match="columns to copy must be float32"):
        pad_track_rows(counts, MAX_TRACKS, inputs=out, columns=[scaled[:, 0].astype(np.float16)] * 2)


def test_pieces_stored_into_a_file_equal_the_padded_arrays(tmp_path, counts):
    """With a file, the buffers hold a few jets at a time and every piece lands at its rows."""
    rng = np.random.default_rng(10)
    tables = rng.normal(size=(2, 1 << 16)).astype(np.float16)
    features = rng.normal(size=(int(counts.sum()), 2)).astype(np.float16)
    label = rng.integers(0, 5, int(counts.sum())).astype(np.int16)
    expected = fresh_rows(counts, features, tables, label)
    sizes = [a.nbytes for a in expected]
    positions = [100, 100 + sizes[0] + 7, 100 + sizes[0] + 7 + sizes[1] + 3]
    path = tmp_path / "rows.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        piece = 16
        stale = np.full(piece, MAX_TRACKS, np.int64)
        assert pad_track_rows(counts, MAX_TRACKS, stale, inputs=np.empty((piece, MAX_TRACKS, 2), np.float16),
                              columns=[features[:, 0], features[:, 1]], tables=tables,
                              valid=np.empty((piece, MAX_TRACKS), bool), labels=np.empty((piece, MAX_TRACKS, 1), np.int8),
                              label_columns=[label], fd=fd, positions=positions) == -1
    finally:
        os.close(fd)
    data = path.read_bytes()
    for array, position in zip(expected, positions):
        got = np.frombuffer(data[position:position + array.nbytes], array.dtype).reshape(array.shape)
        np.testing.assert_array_equal(got, array)


def test_a_store_the_system_refuses_is_reported_by_its_first_jet(tmp_path, counts):
    path = tmp_path / "rows.bin"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        piece = 32
        failed = pad_track_rows(counts, MAX_TRACKS, np.full(piece, MAX_TRACKS, np.int64),
                                valid=np.empty((piece, MAX_TRACKS), bool), fd=fd, first_jet=64)
    finally:
        os.close(fd)
    assert failed == 64 and path.stat().st_size == 0


def test_valid_slots_mark_each_jets_first_slots(counts):
    np.testing.assert_array_equal(valid_slots(counts, MAX_TRACKS), np.arange(MAX_TRACKS)[None, :] < counts[:, None])
    assert valid_slots(np.zeros(0, int), 3).shape == (0, 3)


def test_count_half_patterns_is_a_bincount_per_column():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5000, 2)).astype(np.float16)
    got = count_half_patterns([a[:, 0], a[:, 1]])
    assert got.shape == (2, 1 << 16)
    for j in range(2):
        np.testing.assert_array_equal(got[j], np.bincount(a[:, j].view(np.uint16), minlength=1 << 16))


def test_ragged_index():
    np.testing.assert_array_equal(ragged_index(np.array([10, 0, 5]), np.array([2, 0, 3])), [10, 11, 5, 6, 7])
    assert ragged_index(np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def make_chunk(counts: np.ndarray, seed: int = 0) -> TrainChunk:
    rng = np.random.default_rng(seed)
    n, t = len(counts), int(counts.sum())
    return TrainChunk(jets={"pt": rng.normal(size=n)}, counts=counts, tracks={"d0": rng.normal(size=t)},
                      max_tracks=MAX_TRACKS, label=rng.integers(0, 3, n), weight=rng.random(n),
                      fold=rng.integers(0, 4, n), hash=rng.integers(0, 2**62, n).astype(np.uint64),
                      track_labels={"origin": rng.integers(0, 5, t)}, add_labels={"lxy": rng.random(n)})


def test_from_padded_keeps_the_valid_slots_and_refuses_gaps(counts):
    chunk = make_chunk(counts)
    again = TrainChunk.from_padded(jets=chunk.jets, tracks={"d0": chunk.padded(chunk.tracks["d0"], 99.0)},
                                   valid=chunk.valid, label=chunk.label, weight=chunk.weight, fold=chunk.fold,
                                   hash=chunk.hash, track_labels={"origin": chunk.padded(chunk.track_labels["origin"])},
                                   add_labels=chunk.add_labels)
    np.testing.assert_array_equal(again.counts, counts)
    np.testing.assert_array_equal(again.tracks["d0"], chunk.tracks["d0"])
    np.testing.assert_array_equal(again.track_labels["origin"], chunk.track_labels["origin"])
    gap = np.zeros((2, 3), bool)
    gap[0, 1] = True
    with pytest.raises(ValueError, match="come first"):
        TrainChunk.from_padded(jets={}, tracks={}, valid=gap, label=np.zeros(2), weight=np.ones(2),
                               fold=np.zeros(2), hash=np.zeros(2, np.uint64))


def test_take_rows_and_blocks_carry_each_jets_own_tracks(counts):
    chunk = make_chunk(counts)
    padded = chunk.padded(chunk.tracks["d0"], np.nan)
    index = np.random.default_rng(9).permutation(len(chunk))[:150]
    taken = chunk.take(index)
    taken.validate()
    np.testing.assert_array_equal(taken.padded(taken.tracks["d0"], np.nan), padded[index])
    np.testing.assert_array_equal(taken.jets["pt"], chunk.jets["pt"][index])
    part = chunk.rows(37, 211)
    part.validate()
    np.testing.assert_array_equal(part.padded(part.tracks["d0"], np.nan), padded[37:211])
    blocks = list(chunk.blocks(padded_row_bytes=MAX_TRACKS * 8, block_bytes=MAX_TRACKS * 8 * 300))
    assert [len(b) for b in blocks] == [256, 144]
    np.testing.assert_array_equal(np.concatenate([b.padded(b.tracks["d0"], np.nan) for b in blocks]), padded)


def test_validate_names_the_array_that_does_not_fit(counts):
    chunk = make_chunk(counts)
    chunk.tracks["d0"] = chunk.tracks["d0"][:-1]
    with pytest.raises(ValueError, match=r"tracks\['d0'\].*one value per track"):
        chunk.validate()
