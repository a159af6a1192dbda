"""Train files written in place: PlacedDatasets, the block pool, and write_umami's two paths agreeing."""
from __future__ import annotations

import json
import threading
from dataclasses import replace

import h5py
import numpy as np
import pytest

from tracerflow.io.h5target import H5Writer
from tracerflow.write import read_umami
from tracerflow.write import umami_file
from tracerflow.write.placed import PlacedDatasets
from tracerflow.write.workers import WriteQueue, run_all
from .test_train_file import CLASSES, JET_VARS, TRACK_LABELS, TRACK_VARS, make_scale_dict, synthetic_chunks, write


# ---------------------------------------------------------------- PlacedDatasets

def placed_file(path, n_rows, blocks, threads=3):
    """Write ``x`` (n, 4) float32 and ``flag`` (n,) bool in ``blocks`` ``(start, stop)``, in that order, on threads."""
    x = np.arange(n_rows * 4, dtype=np.float32).reshape(n_rows, 4)
    flag = (np.arange(n_rows) % 3 == 0)
    with H5Writer(path, "test", 1, "digest", "test") as w:
        placed = PlacedDatasets(w, n_rows)
        placed.create("x", np.float32, (4,), variables=["a", "b", "c", "d"])
        placed.create("group/flag", bool)
        placed.create("empty", np.int8, (0,))
        with placed:
            run_all((lambda a=a, b=b: placed.write(a, {"x": x[a:b], "group/flag": flag[a:b]}) for a, b in blocks),
                    threads)
    return x, flag


def test_blocks_land_at_their_rows_whatever_the_order_and_thread(tmp_path):
    cuts = [0, 1, 250, 251, 700, 1000]
    blocks = list(zip(cuts, cuts[1:]))[::-1]
    x, flag = placed_file(tmp_path / "p.h5", 1000, blocks)
    with h5py.File(tmp_path / "p.h5") as f:
        assert f.attrs["complete"]
        assert f["x"].chunks is None and f["x"].compression is None
        np.testing.assert_array_equal(f["x"][()], x)
        np.testing.assert_array_equal(f["group/flag"][()], flag)
        assert f["empty"].shape == (1000, 0)
        assert json.loads(f["x"].attrs["variables"]) == ["a", "b", "c", "d"]


def test_rows_nobody_writes_read_as_zeros(tmp_path):
    x, _ = placed_file(tmp_path / "p.h5", 600, [(100, 200)])
    with h5py.File(tmp_path / "p.h5") as f:
        got = f["x"][()]
    np.testing.assert_array_equal(got[100:200], x[100:200])
    assert not got[:100].any() and not got[200:].any()


def test_placed_files_are_byte_identical(tmp_path):
    placed_file(tmp_path / "a.h5", 777, [(0, 300), (300, 777)], threads=1)
    placed_file(tmp_path / "b.h5", 777, [(300, 777), (0, 300)], threads=2)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


@pytest.mark.parametrize("rows,match", [
    ({"x": np.zeros((5, 4), np.float64)}, "the dataset"),
    ({"x": np.zeros((5, 3), np.float32)}, "the dataset"),
    ({"x": np.zeros((8, 4), np.float32)[::2]}, "the dataset"),
])
def test_rows_of_another_shape_or_type_are_refused(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        with H5Writer(tmp_path / "p.h5", "test", 1, "digest", "test") as w:
            placed = PlacedDatasets(w, 10)
            placed.create("x", np.float32, (4,))
            with placed:
                placed.write(0, rows)
    assert list(tmp_path.iterdir()) == []


def test_rows_outside_the_dataset_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        with H5Writer(tmp_path / "p.h5", "test", 1, "digest", "test") as w:
            placed = PlacedDatasets(w, 10)
            placed.create("x", np.float32, (4,))
            with placed:
                placed.write(8, {"x": np.zeros((3, 4), np.float32)})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- run_all

def test_run_all_runs_every_task_and_reads_ahead_a_bounded_number():
    done, lock = [], threading.Lock()
    pulled = []

    def tasks():
        for i in range(50):
            with lock:
                assert len(pulled) - len(done) <= 2 * 2 + 2, "tasks pulled far ahead of those finished"
                pulled.append(i)
            yield lambda i=i: done.append(i)

    assert run_all(tasks(), threads=2) == 50
    assert sorted(done) == list(range(50))


def test_run_all_raises_the_first_error_and_starts_no_later_task():
    started = []

    def task(i):
        started.append(i)
        if i == 3:
            raise RuntimeError("task 3 failed")

    with pytest.raises(RuntimeError, match="task 3 failed"):
        run_all((lambda i=i: task(i) for i in range(100)), threads=1)
    assert max(started) < 10


# ---------------------------------------------------------------- write_umami: placed and appended agree

def half_chunks():
    """The synthetic chunks with float16 track variables: the table-lookup path with reused buffers."""
    return [replace(c, tracks={k: v.astype(np.float16) for k, v in c.tracks.items()}) for c in synthetic_chunks()]


@pytest.fixture(scope="module", params=["float32 tracks", "float16 tracks"])
def chunks(request):
    return synthetic_chunks() if request.param == "float32 tracks" else half_chunks()


@pytest.mark.parametrize("options", [{}, {"precision": "float32"}, {"concat_jet_tracks": ["eta", "pt"]}])
def test_placed_file_holds_what_the_appended_file_holds(tmp_path, monkeypatch, chunks, options):
    monkeypatch.setattr(umami_file, "PLACED_BLOCK_BYTES", 20 * 1024)  # many blocks: buffers are reused,
    monkeypatch.setattr(umami_file, "PLACED_PIECE_BYTES", 3 * 1024)   # each padded and stored in pieces
    scale_dict = make_scale_dict(chunks)
    n = sum(len(c) for c in chunks)
    write(tmp_path / "appended.h5", chunks, scale_dict, **options)
    assert write(tmp_path / "placed.h5", chunks, scale_dict, expected_jets=n, **options) == n
    appended, placed = read_umami(tmp_path / "appended.h5"), read_umami(tmp_path / "placed.h5")
    assert appended.keys() == placed.keys()
    for name in appended:
        assert placed[name].dtype == appended[name].dtype, name
        np.testing.assert_array_equal(placed[name].view(np.uint8), appended[name].view(np.uint8), err_msg=name)
    with h5py.File(tmp_path / "appended.h5") as a, h5py.File(tmp_path / "placed.h5") as p:
        assert p["tracks/inputs"].chunks is None and a["tracks/inputs"].chunks is not None
        assert a.attrs.keys() == p.attrs.keys()
        for name in appended:
            assert {k: str(v) for k, v in a[name].attrs.items()} == {k: str(v) for k, v in p[name].attrs.items()}
        assert p.attrs["complete"] and p.attrs["n_jets"] == n


def test_placed_files_of_the_same_input_are_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(umami_file, "PLACED_BLOCK_BYTES", 20 * 1024)
    chunks = half_chunks()
    scale_dict = make_scale_dict(chunks)
    n = sum(len(c) for c in chunks)
    write(tmp_path / "a.h5", chunks, scale_dict, expected_jets=n)
    write(tmp_path / "b.h5", chunks, scale_dict, expected_jets=n)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


@pytest.mark.parametrize("system", ["refuses once", "refuses"])
def test_a_piece_the_compiled_store_could_not_write_goes_through_os_pwrite(tmp_path, monkeypatch, system):
    """The compiled loop cannot read errno: a piece it fails to store is stored again with
    ``os.pwrite``, which either succeeds (and the file is complete) or raises the error."""
    import errno
    import os

    monkeypatch.setattr(umami_file, "PLACED_PIECE_BYTES", 3 * 1024)
    chunks = half_chunks()
    scale_dict = make_scale_dict(chunks)
    n = sum(len(c) for c in chunks)
    write(tmp_path / "appended.h5", chunks, scale_dict)
    read_only = os.open(tmp_path / "appended.h5", os.O_RDONLY)  # a descriptor every compiled store fails on
    monkeypatch.setattr(PlacedDatasets, "fd", property(lambda self: read_only))
    if system == "refuses":
        def full(fd, data, position):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(os, "pwrite", full)
    try:
        if system == "refuses":
            with pytest.raises(OSError, match="No space left"):
                write(tmp_path / "placed.h5", chunks, scale_dict, expected_jets=n)
            assert not (tmp_path / "placed.h5").exists()
            return
        write(tmp_path / "placed.h5", chunks, scale_dict, expected_jets=n)
    finally:
        os.close(read_only)
    appended, placed = read_umami(tmp_path / "appended.h5"), read_umami(tmp_path / "placed.h5")
    for name in appended:
        np.testing.assert_array_equal(placed[name].view(np.uint8), appended[name].view(np.uint8), err_msg=name)


@pytest.mark.parametrize("expected", [100, 5000])
def test_placed_write_of_another_number_of_jets_fails_and_leaves_nothing(tmp_path, expected):
    chunks = half_chunks()
    with pytest.raises(ValueError, match="jets"):
        write(tmp_path / "x.h5", chunks, make_scale_dict(chunks), expected_jets=expected)
    assert list(tmp_path.iterdir()) == []


def test_a_track_label_its_dtype_cannot_hold_is_named(tmp_path):
    chunks = half_chunks()
    bad = replace(chunks[1], track_labels={**chunks[1].track_labels,
                                           "vertex": np.full_like(chunks[1].track_labels["vertex"], 300)})
    chunks[1] = bad
    n = sum(len(c) for c in chunks)
    with pytest.raises(ValueError, match="'vertex'.*int8"):
        write(tmp_path / "x.h5", chunks, make_scale_dict(chunks), expected_jets=n)
    assert list(tmp_path.iterdir()) == []


def test_every_class_name_and_column_is_kept(tmp_path):
    chunks = half_chunks()
    n = sum(len(c) for c in chunks)
    write(tmp_path / "p.h5", chunks, make_scale_dict(chunks), expected_jets=n)
    names = umami_file.read_umami_names(tmp_path / "p.h5")
    assert names["class_names"] == CLASSES and names["jet_variables"] == JET_VARS
    assert names["track_variables"] == TRACK_VARS and names["track_label_names"] == TRACK_LABELS


# ---------------------------------------------------------------- WriteQueue

def test_write_queue_runs_writes_in_order_and_hands_back_every_buffer():
    seen, returned = [], []
    with WriteQueue() as writes:
        for i in range(20):
            writes.submit(seen.append, i, then=lambda i=i: returned.append(i))
    assert seen == list(range(20)) and sorted(returned) == list(range(20))


def test_a_failed_write_is_raised_and_its_buffer_still_handed_back():
    returned = []

    def fail(i):
        raise OSError(f"disk full at write {i}")

    with pytest.raises(OSError, match="disk full at write 0"):
        with WriteQueue() as writes:
            writes.submit(fail, 0, then=lambda: returned.append(0))
            for _ in range(100):
                writes.submit(lambda: None)
    assert returned == [0]


def test_a_full_disk_fails_before_any_row_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    import os

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left"):
        placed_file(tmp_path / "p.h5", 100, [(0, 100)])
    assert list(tmp_path.iterdir()) == []


def test_a_file_system_that_cannot_reserve_space_still_gets_the_rows(tmp_path, monkeypatch):
    import errno
    import os

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    x, _ = placed_file(tmp_path / "p.h5", 100, [(0, 100)])
    with h5py.File(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f["x"][()], x)


def test_the_compiled_store_waits_for_the_files_mutex(tmp_path):
    """A piece is stored only once whoever holds the file's mutex lets go of it."""
    import os

    from tracerflow.write.kernels import pad_track_rows
    from tracerflow.write.placed import StoreMutex

    mutex = StoreMutex()
    counts = np.array([2, 0, 3])
    path = tmp_path / "rows.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    results = []
    try:
        with mutex.held():
            store = threading.Thread(target=lambda: results.append(pad_track_rows(
                counts, 4, valid=np.empty((len(counts), 4), bool), fd=fd, mutex=mutex.address)))
            store.start()
            store.join(timeout=0.3)
            assert store.is_alive() and path.stat().st_size == 0
        store.join(timeout=10)
    finally:
        os.close(fd)
    assert results == [-1]
    np.testing.assert_array_equal(np.frombuffer(path.read_bytes(), bool).reshape(3, 4),
                                  np.arange(4)[None, :] < counts[:, None])
