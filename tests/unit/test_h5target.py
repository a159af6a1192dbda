"""Atomic, self-describing HDF5 targets: H5Writer, target_status, check_schema."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

import tracerflow
from tracerflow.io.h5target import H5Writer, SchemaMismatch, check_schema, read_root_attrs, target_status


def writer(path, digest="d1", **kw):
    return H5Writer(path, "test.schema", 3, digest, "Task(x=1)", **kw)


def test_clean_exit_writes_complete_file_with_root_attrs(tmp_path):
    path = tmp_path / "sub" / "out.h5"
    with writer(path, attrs={"sample": "ttbar", "names": ["a", "b"], "cfg": {"k": 1}, "none": None}) as w:
        w.append("x", np.arange(5))
        # while writing, nothing is at the final path and the temporary file says incomplete
        assert not path.exists()
        assert w.tmp_path.exists() and w.tmp_path.parent == path.parent
        assert bool(w.file.attrs["complete"]) is False
    assert path.exists()
    assert not w.tmp_path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.h5"]
    attrs = read_root_attrs(path)
    assert attrs["complete"] is True
    assert attrs["schema"] == "test.schema"
    assert attrs["schema_version"] == 3
    assert attrs["tracerflow_version"] == tracerflow.__version__
    assert attrs["config_digest"] == "d1"
    assert attrs["created_by"] == "Task(x=1)"
    assert attrs["sample"] == "ttbar"
    assert json.loads(attrs["names"]) == ["a", "b"]
    assert json.loads(attrs["cfg"]) == {"k": 1}
    assert attrs["none"] == "null"
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][:], np.arange(5))


def test_exception_leaves_no_file(tmp_path):
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with writer(path) as w:
            w.append("x", np.arange(5))
            raise RuntimeError("boom")
    assert not path.exists()
    assert not w.tmp_path.exists()
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_older_file_untouched(tmp_path):
    path = tmp_path / "out.h5"
    with writer(path, digest="old") as w:
        w.append("x", np.arange(3))
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(KeyboardInterrupt):
        with writer(path, digest="new") as w:
            w.append("x", np.arange(100))
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime
    assert read_root_attrs(path)["config_digest"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    # a clean rewrite replaces it
    with writer(path, digest="new") as w:
        w.append("x", np.arange(4))
    assert read_root_attrs(path)["config_digest"] == "new"
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (4,)


def test_compression_applies_to_integer_valued_data_unless_floats_asked(tmp_path):
    path = tmp_path / "out.h5"
    reals = np.linspace(0.1, 5.0, 1000, dtype=np.float32)
    with writer(path, compression="lzf") as w:
        w.append("reals", reals)
        w.append("labels_as_floats", np.round(reals))
        w.append("ints", np.arange(1000))
    with h5py.File(path, "r") as f:
        assert [f[n].compression for n in ("reals", "labels_as_floats", "ints")] == [None, "lzf", "lzf"]
        np.testing.assert_array_equal(f["reals"][:], reals)
    with H5Writer(tmp_path / "all.h5", "s", 1, "d", "t", "lzf", compress_floats=True) as w:
        w.append("reals", reals)
    with h5py.File(tmp_path / "all.h5", "r") as f:
        assert f["reals"].compression == "lzf"


def test_append_grows_over_chunks(tmp_path):
    path = tmp_path / "out.h5"
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 0, 2000, 1, 70_000)]
    with writer(path, compression="gzip") as w:
        for c in chunks:
            w.append("m", c)
            w.append("v", c[:, 0].astype(np.int64))
        w.append("first_empty", np.zeros(0, np.uint16))
        w.append("first_empty", np.array([1, 2], np.uint16))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["m"][:], np.concatenate(chunks))
        assert f["m"].dtype == np.float32
        assert f["m"].maxshape == (None, 3)
        assert f["m"].compression is None, "real-valued floats are stored raw unless compress_floats"
        assert f["v"].compression == "gzip"
        np.testing.assert_array_equal(f["v"][:], np.concatenate(chunks)[:, 0].astype(np.int64))
        np.testing.assert_array_equal(f["first_empty"][:], [1, 2])


def test_append_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="appending shape"):
        with writer(tmp_path / "out.h5") as w:
            w.append("m", np.zeros((2, 3)))
            w.append("m", np.zeros((2, 4)))
    assert not (tmp_path / "out.h5").exists()


def test_ensure_write_and_set_attrs(tmp_path):
    path = tmp_path / "out.h5"
    with writer(path) as w:
        w.append("a", np.arange(3))
        w.ensure("a", np.float64)  # exists: untouched
        w.ensure("g/b", np.uint32, (4,))
        w.write("table/name", np.array([b"all", b"cut"]))
        w.set_attrs("g/b", names=["p", "q", "r", "s"])
        w.set_attrs("/", n=7)
    with h5py.File(path, "r") as f:
        assert f["a"].dtype == np.int64 and f["a"].shape == (3,)
        assert f["g/b"].dtype == np.uint32 and f["g/b"].shape == (0, 4)
        assert json.loads(f["g/b"].attrs["names"]) == ["p", "q", "r", "s"]
        assert f["table/name"][:].tolist() == [b"all", b"cut"]
        assert f.attrs["n"] == 7


def test_bad_compression():
    with pytest.raises(ValueError, match="compression must be one of"):
        H5Writer("x.h5", "s", 1, "d", "t", compression="zstd")


def test_target_status(tmp_path):
    path = tmp_path / "t.h5"
    status = target_status(path, "d1")
    assert (status.exists, status.complete, status.digest_matches, status.ok, status.reason) == (
        False, False, False, False, "missing")

    with h5py.File(path, "w") as f:  # as a crashed writer would leave it
        f.attrs["schema"] = "test.schema"
        f.attrs["config_digest"] = "d1"
        f.attrs["complete"] = False
    status = target_status(path, "d1")
    assert status.exists and not status.complete and not status.ok and status.reason == "incomplete"

    with writer(path, digest="d1") as w:
        w.append("x", np.arange(2))
    status = target_status(path, "d1", schema="test.schema")
    assert status.ok and status.reason == "ok"

    status = target_status(path, "d2")
    assert status.exists and status.complete and not status.digest_matches and not status.ok
    assert status.reason == "config changed"

    status = target_status(path, "d1", schema="other.schema")
    assert not status.ok and "expected 'other.schema'" in status.reason

    version = int(h5py.File(path, "r").attrs["schema_version"])
    assert target_status(path, "d1", schema="test.schema", version=version).ok
    status = target_status(path, "d1", schema="test.schema", version=version + 1)
    assert not status.ok and status.reason == f"layout version {version}, this tracerflow writes {version + 1}"

    path.write_bytes(b"not an hdf5 file at all")
    status = target_status(path, "d1")
    assert status.exists and not status.ok and status.reason.startswith("unreadable")


def test_check_schema(tmp_path):
    path = tmp_path / "t.h5"
    with writer(path) as w:
        w.append("x", np.arange(2))
    with h5py.File(path, "r") as f:
        check_schema(f, "test.schema", 3)
        with pytest.raises(SchemaMismatch, match="schema 'test.schema', expected 'other'"):
            check_schema(f, "other", 3)
        with pytest.raises(SchemaMismatch, match="version 3, this tracerflow reads 4"):
            check_schema(f, "test.schema", 4)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with h5py.File(path, "r") as f:
        with pytest.raises(SchemaMismatch, match="not complete"):
            check_schema(f, "test.schema", 3)


def test_a_target_this_process_wrote_is_known_without_reading_it_and_a_replaced_one_is_read(tmp_path, monkeypatch):
    """The writer keeps the status of what it renamed into place; a file replaced behind its back
    (a new version: another inode, size or time) is read again."""
    from tracerflow.io import h5target

    path = tmp_path / "t.h5"
    with H5Writer(path, "tracerflow.test", 1, "d1", "test") as w:
        w.file.create_dataset("x", data=np.arange(3))
    opened = []
    real = h5target.h5py.File
    monkeypatch.setattr(h5target.h5py, "File", lambda *a, **k: opened.append(str(a[0])) or real(*a, **k)
                        if isinstance(a[0], (str, os.PathLike)) else real(*a, **k))
    status = target_status(path, "d1", "tracerflow.test", 1)
    assert status.ok and opened == []
    other = tmp_path / "other.h5"
    with H5Writer(other, "tracerflow.test", 1, "d2", "test") as w:
        w.file.create_dataset("x", data=np.arange(30))
    os.replace(other, path)  # written by "someone else": this process never renamed it to t.h5
    status = target_status(path, "d1", "tracerflow.test", 1)
    assert not status.ok and status.reason == "config changed" and opened == [str(path)]
