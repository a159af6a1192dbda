"""SampleTracer index: registering caches, lookups, collisions, union and the tracer file."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from tracerflow.columns import EventBatch
from tracerflow.hashing import HashCollision, hash_hex
from tracerflow.io import events_file
from tracerflow.io.h5target import H5Writer, SchemaMismatch, read_root_attrs
from tracerflow.tracer import Event, SampleTracer, Settings


def full_tracer(samples, **settings) -> SampleTracer:
    tracer = SampleTracer(**settings)
    for s in samples.values():
        tracer.AddEvent(s.events)
        tracer.AddGraph(s.graphs)
        tracer.AddSelections(s.selections)
    return tracer


def file_index(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {c: f[f"index/{c}"][:] for c in ("hash", "entry")}


def forged_events(path, hashes, entries, sample="ttbar", logical="ttbar/f0.root") -> None:
    """An events file written by hand, with chosen hashes and entries."""
    n = len(hashes)
    batch = EventBatch(index={"hash": np.asarray(hashes, np.uint64), "sample": np.zeros(n, np.uint16),
                              "file": np.zeros(n, np.uint16), "entry": np.asarray(entries, np.int64)},
                       event={"weight": np.ones(n, np.float32)})
    with H5Writer(path, events_file.SCHEMA, events_file.SCHEMA_VERSION, "x", "test") as writer:
        events_file.append_batch(writer, batch)
        events_file.finish(writer, batch, [sample], [logical])


def test_settings_defaults_and_validation():
    tracer = SampleTracer()
    assert (tracer.Threads, tracer.Chunks, tracer.EventStart, tracer.EventStop) == (1, 100_000, None, None)
    assert (tracer.kFolds, tracer.Epochs, tracer.Optimizer, tracer.Scheduler) == (5, 10, "ADAM", None)
    assert (tracer.ProjectName, tracer.OutputDirectory) == ("tracerflow", "tracerflow-output")
    tracer.Chunks = np.int64(7)
    assert tracer.Chunks == 7 and tracer.settings.Chunks == 7
    with pytest.raises(ValueError, match="Chunks"):
        tracer.Chunks = 0
    with pytest.raises(AttributeError, match="Epoch"):
        SampleTracer(Epoch=3)
    assert Settings.from_json(Settings(kFolds=3).to_json()) == Settings(kFolds=3)


def test_len_contains_and_lookup(samples):
    tracer = full_tracer(samples)
    assert len(tracer) == 17
    first = file_index(samples["ttbar"].events)
    zjets = file_index(samples["zjets"].events)
    h = int(first["hash"][3])
    assert h in tracer and hash_hex(h) in tracer and np.uint64(h) in tracer
    assert int(zjets["hash"][6]) in tracer
    assert 12345 not in tracer and "zz" not in tracer and None not in tracer
    ev = tracer[hash_hex(h)]
    assert isinstance(ev, Event) and ev.hash == hash_hex(h)
    assert (ev.sample, ev.file, ev.entry) == ("ttbar", "ttbar/f0.root", 3)
    assert ev in tracer
    with pytest.raises(KeyError, match="0000000000003039"):
        tracer[12345]
    np.testing.assert_array_equal(tracer.hashes, np.concatenate([first["hash"], zjets["hash"]]))


def test_lookup_values_equal_file(samples):
    tracer = full_tracer(samples)
    path = samples["zjets"].events
    with events_file.EventsFile(path) as f:
        batch = f.read()
    jet_offsets, trk_offsets = batch.tables["jets"].offsets, batch.tables["tracks"].offsets
    for i, h in enumerate(batch.index["hash"]):
        ev = tracer[int(h)]
        assert ev.weight == batch.event["weight"][i] and ev.run == batch.event["run"][i]
        jets = ev.jets
        lo, hi = jet_offsets[i], jet_offsets[i + 1]
        assert [j.pt for j in jets] == batch.tables["jets"].fields["pt"][lo:hi].tolist()
        for k, jet in enumerate(jets):
            t0, t1 = trk_offsets[lo + k], trk_offsets[lo + k + 1]
            assert [t.d0 for t in jet.tracks] == batch.tables["tracks"].fields["d0"][t0:t1].tolist()
        assert [t.pt for t in ev.tracks] == batch.tables["tracks"].fields["pt"][trk_offsets[lo]:trk_offsets[hi]].tolist()
    with pytest.raises(AttributeError, match="no scalar or collection 'muons'"):
        tracer[int(batch.index["hash"][0])].muons


def test_adding_the_same_events_is_idempotent(samples, tmp_path):
    tracer = SampleTracer()
    tracer.AddEvent(samples["ttbar"].events)
    tracer.AddEvent(samples["ttbar"].events)
    assert len(tracer) == 10 and len(tracer.index.paths["events"]) == 1
    copy = tmp_path / "copy.h5"
    shutil.copy(samples["ttbar"].events, copy)
    tracer.AddEvent(copy)
    assert len(tracer) == 10
    assert set(tracer.index.tables["events"]["source"]) == {0}


def test_hash_collision_names_both_files(samples, tmp_path):
    tracer = SampleTracer()
    tracer.AddEvent(samples["ttbar"].events)
    reused = int(file_index(samples["ttbar"].events)["hash"][4])
    forged = tmp_path / "forged.h5"
    forged_events(forged, [reused, 77], [99, 100])
    with pytest.raises(HashCollision) as err:
        tracer.AddEvent(forged)
    message = str(err.value)
    assert hash_hex(reused) in message and str(forged) in message and str(samples["ttbar"].events) in message
    assert len(tracer) == 10 and tracer.index.paths["events"] == [str(samples["ttbar"].events.resolve())]
    other = SampleTracer()
    other.AddEvent(forged)
    with pytest.raises(HashCollision):
        tracer + other
    with pytest.raises(HashCollision):
        tracer += other
    assert len(tracer) == 10


def test_union_operators(samples):
    a, b = SampleTracer(Chunks=5), SampleTracer()
    a.AddEvent(samples["ttbar"].events)
    b.AddEvent(samples["zjets"].events)
    b.AddGraph(samples["zjets"].graphs)
    both = a + b
    assert (len(a), len(b), len(both)) == (10, 7, 17)
    assert both.Chunks == 5 and both.index.samples == ["ttbar", "zjets"]
    assert both.index.paths["graphs"] == b.index.paths["graphs"]
    assert len(a + a) == 10
    assert len(sum([a, b])) == 17
    a += b
    assert len(a) == 17
    assert [ev.sample for ev in a] == ["ttbar"] * 10 + ["zjets"] * 7
    assert len(a[int(file_index(samples["zjets"].events)["hash"][0])].release_graph()) > 0


def test_not_a_tracerflow_file(samples, tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    tracer = SampleTracer()
    for add in (tracer.AddEvent, tracer.AddGraph, tracer.AddSelections):
        with pytest.raises(SchemaMismatch, match="plain.h5.*not a tracerflow"):
            add(plain)
    with pytest.raises(SchemaMismatch, match="ttbar.events.h5 is not a tracerflow graphs file"):
        tracer.AddGraph(samples["ttbar"].events)
    root = samples["ttbar"].events.with_name("ttbar.root")
    with pytest.raises(SchemaMismatch, match="ttbar.root: not an HDF5 file"):
        tracer.AddEvent(root)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        tracer.AddEvent(tmp_path / "missing.h5")
    with pytest.raises(SchemaMismatch, match="plain.h5"):
        tracer.RestoreTracer(plain)
    assert len(tracer) == 0


def test_dump_and_restore_tracer(samples, tmp_path):
    tracer = full_tracer(samples, Chunks=4, EventStart=2, kFolds=3, Optimizer="SGD", Scheduler="cosine",
                         ProjectName="proj", OutputDirectory=str(tmp_path / "out"))
    path = tracer.DumpTracer()
    assert path == tmp_path / "out" / "proj" / "tracer.h5"
    attrs = read_root_attrs(path)
    assert attrs["schema"] == "tracerflow.tracer" and attrs["schema_version"] == 1 and attrs["complete"]
    with h5py.File(path) as f:
        kinds = set()
        f.visititems(lambda name, obj: kinds.add(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
    assert kinds <= {"u", "i", "O"}
    fresh = SampleTracer(ProjectName="proj", OutputDirectory=str(tmp_path / "out"))
    fresh.RestoreTracer()
    assert fresh.settings == tracer.settings
    assert fresh.index.samples == tracer.index.samples and fresh.index.files == tracer.index.files
    assert fresh.index.paths == tracer.index.paths
    for kind in ("events", "graphs", "selections"):
        for name, values in tracer.index.tables[kind].columns.items():
            np.testing.assert_array_equal(fresh.index.tables[kind][name], values)
            assert fresh.index.tables[kind][name].dtype == values.dtype
    for name, values in tracer.index.cover.items():
        np.testing.assert_array_equal(fresh.index.cover[name], values)
    assert [ev.hash for ev in fresh] == [ev.hash for ev in tracer]
    existing = SampleTracer()
    existing.AddEvent(samples["ttbar"].events)
    existing.RestoreTracer(path)
    assert len(existing) == 17 and existing.Optimizer == "SGD"
