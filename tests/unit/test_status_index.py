"""The status index: what finished targets say about themselves, kept between runs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tracerflow.io import h5target, status_index
from tracerflow.io.h5target import H5Writer, target_status


@pytest.fixture(autouse=True)
def fresh(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(status_index.ENV_DIR, str(tmp_path_factory.mktemp("status")))
    status_index.forget()
    yield
    status_index.forget()


def write(path, digest="d1", n=3):
    with H5Writer(path, "tracerflow.test", 1, digest, "test") as w:
        w.file.create_dataset("x", data=np.arange(n))


def new_process():
    """What another process starts with: nothing in memory."""
    status_index.forget()


@pytest.fixture
def opened(monkeypatch):
    paths = []
    real = h5target.h5py.File

    def counting(*args, **kwargs):
        if isinstance(args[0], (str, os.PathLike)):
            paths.append(os.path.basename(str(args[0])))
        return real(*args, **kwargs)

    monkeypatch.setattr(h5target.h5py, "File", counting)
    return paths


def test_a_saved_index_answers_the_next_process_without_opening_the_targets(tmp_path, opened):
    for i in range(3):
        write(tmp_path / f"t{i}.h5")
    new_process()
    assert all(target_status(tmp_path / f"t{i}.h5", "d1", "tracerflow.test", 1).ok for i in range(3))
    assert sorted(opened) == ["t0.h5", "t1.h5", "t2.h5"]
    status_index.save()
    index = json.loads(status_index.index_path(tmp_path).read_text())
    assert index["layout"] == "tracerflow.status" and sorted(index["files"]) == ["t0.h5", "t1.h5", "t2.h5"]

    new_process()
    opened.clear()
    statuses = [target_status(tmp_path / f"t{i}.h5", "d1", "tracerflow.test", 1) for i in range(3)]
    assert all(s.ok for s in statuses) and opened == []
    assert target_status(tmp_path / "t0.h5", "d2", "tracerflow.test", 1).reason == "config changed"


def test_a_target_replaced_touched_or_removed_is_read_again_and_its_entry_goes(tmp_path, opened):
    write(tmp_path / "a.h5")
    write(tmp_path / "b.h5")
    write(tmp_path / "c.h5")
    status_index.save()  # the writer's own knowledge
    new_process()
    write(tmp_path / "elsewhere.h5", digest="d2", n=30)
    os.replace(tmp_path / "elsewhere.h5", tmp_path / "a.h5")  # a new version under the old name
    os.utime(tmp_path / "b.h5", ns=(1, 1))  # same bytes, another time
    (tmp_path / "c.h5").unlink()
    new_process()
    opened.clear()
    assert target_status(tmp_path / "a.h5", "d1", "tracerflow.test", 1).reason == "config changed"
    assert target_status(tmp_path / "b.h5", "d1", "tracerflow.test", 1).ok
    assert sorted(opened) == ["a.h5", "b.h5"]
    status_index.save()
    assert sorted(json.loads(status_index.index_path(tmp_path).read_text())["files"]) == ["a.h5", "b.h5"]


def test_an_incomplete_file_in_place_is_never_taken_for_done(tmp_path):
    write(tmp_path / "t.h5")
    status_index.save()
    new_process()
    import h5py

    with h5py.File(tmp_path / "t.h5", "a") as f:  # someone rewrites it where it lies
        f.attrs["complete"] = False
    assert target_status(tmp_path / "t.h5", "d1", "tracerflow.test", 1).reason == "incomplete"


@pytest.mark.parametrize("text", ["", "garbage{", '{"layout": "other", "version": 1, "files": {}}',
                                  '{"layout": "tracerflow.status", "version": 1, "files": {"t.h5": [1, 2]}}',
                                  "another directory's"])
def test_an_unreadable_or_foreign_index_is_ignored_and_replaced(tmp_path, opened, text):
    write(tmp_path / "t.h5")
    new_process()
    status_index.index_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    if text == "another directory's":  # a well-formed index, but recorded for another directory
        version = list(status_index.version_of(os.stat(tmp_path / "t.h5")))  # it would match t.h5
        text = json.dumps({"layout": "tracerflow.status", "version": 1, "directory": "/elsewhere", "files": {
            "t.h5": [*version, {"schema": "tracerflow.test", "schema_version": 1, "complete": True,
                                "config_digest": "another"}]}})
    status_index.index_path(tmp_path).write_text(text)
    assert target_status(tmp_path / "t.h5", "d1", "tracerflow.test", 1).ok and opened == ["t.h5"]
    status_index.save()
    assert list(json.loads(status_index.index_path(tmp_path).read_text())["files"]) == ["t.h5"]


def test_processes_saving_side_by_side_keep_each_others_entries(tmp_path):
    write(tmp_path / "a.h5")
    status_index.save()
    new_process()
    write(tmp_path / "b.h5")  # "another process" learns b only
    status_index.save()
    files = json.loads(status_index.index_path(tmp_path).read_text())["files"]
    assert sorted(files) == ["a.h5", "b.h5"]
    assert not [p for p in status_index.index_path(tmp_path).parent.iterdir() if ".tmp-" in p.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.h5"], "the index is kept outside the outputs"


def test_an_input_files_identity_is_kept_by_version_and_read_again_when_the_file_changes(tmp_path, monkeypatch,
                                                                                         shared_data):
    import shutil

    from tracerflow.events import source

    root = tmp_path / "in.root"
    shutil.copyfile(shared_data / "uproot-HZZ.root", root)
    source._identity.cache_clear()
    first = source.file_identity(root)
    assert first["uuid"] is not None and first["size"] == root.stat().st_size
    status_index.save()

    new_process()
    source._identity.cache_clear()

    def no_reading(*args, **kwargs):
        raise AssertionError("the identity was read from the file")

    monkeypatch.setattr(source, "open", no_reading, raising=False)
    assert source.file_identity(root) == first
    monkeypatch.delattr(source, "open")

    with open(root, "r+b") as fh:  # rewritten in place: same size, another tail
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\x00" * 8)
    new_process()
    source._identity.cache_clear()
    changed = source.file_identity(root)
    assert changed["uuid"] == first["uuid"] and changed["ends"] != first["ends"]
