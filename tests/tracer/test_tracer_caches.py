"""SampleTracer caches: Restore/Flush/Dump of events, graphs and selections; release_graph/selection."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.hashing import hash_hex
from tracerflow.io.events_file import EventsFile
from tracerflow.io.graphs_file import MATRICES, GraphsFile
from tracerflow.io.h5target import read_root_attrs
from tracerflow.io.selections_file import read_cutflow, read_selection
from tracerflow.tracer import SampleTracer


def full_tracer(samples, **settings) -> SampleTracer:
    tracer = SampleTracer(**settings)
    for s in samples.values():
        tracer.AddEvent(s.events)
        tracer.AddGraph(s.graphs)
        tracer.AddSelections(s.selections)
    return tracer


def read_events(path):
    with EventsFile(path) as f:
        return f.read()


def read_graphs(path) -> dict[str, np.ndarray]:
    with GraphsFile(path) as f:
        return f.read()


def event_columns(batch, i: int) -> dict[str, object]:
    """Every column of event row ``i`` of a batch, as lists, keyed by path."""
    out = {f"event/{k}": v[i] for k, v in batch.event.items()}
    jets, tracks = batch.tables["jets"], batch.tables["tracks"]
    j0, j1 = jets.offsets[i], jets.offsets[i + 1]
    t0, t1 = tracks.offsets[j0], tracks.offsets[j1]
    out.update({f"jets/{k}": v[j0:j1].tolist() for k, v in jets.fields.items()})
    out.update({f"tracks/{k}": v[t0:t1].tolist() for k, v in tracks.fields.items()})
    out["tracks/counts"] = tracks.counts[j0:j1].tolist()
    out["entry"] = int(batch.index["entry"][i])
    return out


def by_hash(batch) -> dict[int, dict[str, object]]:
    return {int(h): event_columns(batch, i) for i, h in enumerate(batch.index["hash"])}


@pytest.fixture
def no_event_reads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("read an events file although the events are held in memory")

    def arm() -> None:
        monkeypatch.setattr(EventsFile, "read", refuse)

    return arm


def test_restore_flush_dump_events(samples, tmp_path, no_event_reads):
    tracer = full_tracer(samples, Chunks=3, OutputDirectory=str(tmp_path), ProjectName="p")
    originals = {**by_hash(read_events(samples["ttbar"].events)), **by_hash(read_events(samples["zjets"].events))}
    chosen = [h for h in originals][1:14:2]
    tracer.RestoreEvents([hash_hex(h) for h in chosen])
    np.testing.assert_array_equal(tracer.held("events"), np.sort(np.array(chosen, np.uint64)))
    tracer.RestoreEvents(chosen[:3])
    assert len(tracer.held("events")) == len(chosen)
    with pytest.raises(KeyError, match="0000000000000001"):
        tracer.RestoreEvents([1])
    path = tracer.DumpEvents()
    assert path == tmp_path / "p" / "events.h5"
    assert read_root_attrs(path)["schema"] == "tracerflow.events"
    dumped = read_events(path)
    assert sorted(dumped.index["hash"].tolist()) == sorted(chosen)
    for h, columns in by_hash(dumped).items():
        assert columns == originals[h]
    dumped_tracer = SampleTracer()
    dumped_tracer.AddEvent(path)
    assert [ev.sample for ev in dumped_tracer] == ["ttbar"] * 5 + ["zjets"] * 2
    no_event_reads()
    for h in chosen:
        ev = tracer[h]
        assert event_columns_of_view(ev) == originals[h]
    tracer.FlushEvents(chosen[:2])
    assert sorted(tracer.held("events").tolist()) == sorted(chosen[2:])
    tracer.FlushEvents()
    assert tracer.held("events").size == 0 and tracer._held["events"] == {}


def event_columns_of_view(ev) -> dict[str, object]:
    record = ev.release_event()
    out = {"event/run": record.run, "event/weight": record.weight, "entry": record.entry}
    for name in ("e", "eta", "mass", "phi", "pt", "px", "py", "pz"):
        out[f"jets/{name}"] = [getattr(j, name) for j in record.jets]
    out["tracks/pt"] = [t.pt for t in record.tracks]
    out["tracks/d0"] = [t.d0 for t in record.tracks]
    out["tracks/counts"] = [len(j.tracks) for j in record.jets]
    return out


def test_iteration_uses_held_events(samples, no_event_reads):
    tracer = full_tracer(samples, Chunks=4)
    expected = [(ev.hash, float(ev.weight)) for ev in tracer]
    tracer.RestoreEvents()
    no_event_reads()
    assert [(ev.hash, float(ev.weight)) for ev in tracer] == expected


def graphs_of(arrays: dict[str, np.ndarray], h: int) -> list[dict[str, np.ndarray]]:
    """The graphs of hash ``h`` straight from the arrays of a graphs file."""
    rows = np.flatnonzero(arrays["index/hash"] == h)
    nodes = np.concatenate([[0], np.cumsum(arrays["nodes/counts"], dtype=np.int64)])
    edges = np.concatenate([[0], np.cumsum(arrays["edges/counts"], dtype=np.int64)])
    return [{"item": int(arrays["index/item"][g]), "x": arrays["nodes/x"][nodes[g]:nodes[g + 1]],
             "edge_index": arrays["edges/index"][edges[g]:edges[g + 1]].T,
             "edge_attr": arrays["edges/x"][edges[g]:edges[g + 1]], "graph_attr": arrays["graph/x"][g],
             "truth_nodes": arrays["truth/nodes"][nodes[g]:nodes[g + 1]], "truth_graph": arrays["truth/graph"][g]}
            for g in rows]


def assert_graphs_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["item"] == w["item"]
        for key in ("x", "edge_index", "edge_attr", "graph_attr"):
            np.testing.assert_array_equal(g[key], w[key])
        np.testing.assert_array_equal(g["truth"]["nodes"], w["truth_nodes"])
        np.testing.assert_array_equal(g["truth"]["graph"], w["truth_graph"])


def test_release_graph_against_file(samples):
    tracer = full_tracer(samples)
    arrays = {s.name: read_graphs(s.graphs) for s in samples.values()}
    for ev in tracer:
        graphs = ev.release_graph()
        assert_graphs_equal(graphs, graphs_of(arrays[ev.sample], int(ev.hash, 16)))
        assert len(graphs) == len(ev.jets)
        for g, jet in zip(graphs, ev.jets):
            assert g["x"].shape == (len(jet.tracks), 2) and g["x_names"] == ["pt", "d0"]
            assert g["edge_index"].shape[0] == 2 and g["edge_attr_names"] == ["dpt"]
            assert g["graph_attr"][0] == pytest.approx(jet.pt) and g["truth_names"]["graph"] == ["hard"]
    first = tracer[tracer.hashes[1]]
    assert first.jets == [] and first.release_graph() == []
    bare = SampleTracer()
    bare.AddEvent(samples["ttbar"].events)
    assert bare[bare.hashes[0]].release_graph() == []


def test_restore_flush_dump_graphs(samples, tmp_path, monkeypatch):
    tracer = full_tracer(samples, Chunks=2)
    with_graphs = [int(h) for h in tracer.hashes if tracer[int(h)].jets]
    tracer.RestoreGraphs(tracer.hashes[:5])
    np.testing.assert_array_equal(tracer.held("graphs"), np.sort([h for h in tracer.hashes[:5] if int(h) in with_graphs]))
    tracer.RestoreGraphs()
    np.testing.assert_array_equal(tracer.held("graphs"), np.sort(np.array(with_graphs, np.uint64)))
    path = tracer.DumpGraphs(tmp_path / "graphs.h5")
    dumped = read_graphs(path)
    originals = [read_graphs(s.graphs) for s in samples.values()]
    for key in originals[0]:
        if key not in ("index/sample", "index/file"):
            np.testing.assert_array_equal(dumped[key], np.concatenate([o[key] for o in originals]), err_msg=key)
    with GraphsFile(path) as f, GraphsFile(samples["ttbar"].graphs) as g:
        assert all(f.names(m) == g.names(m) for m in MATRICES.values())
    monkeypatch.setattr(GraphsFile, "read", lambda *a, **k: pytest.fail("read a graphs file for held graphs"))
    held = {h: tracer[h].release_graph() for h in with_graphs}
    monkeypatch.undo()
    fresh = full_tracer(samples)
    for h, graphs in held.items():
        assert_graphs_equal(graphs, graphs_of(read_graphs(samples[fresh[h].sample].graphs), h))
    tracer.FlushGraphs(with_graphs[:3])
    assert len(tracer.held("graphs")) == len(with_graphs) - 3
    tracer.FlushGraphs()
    assert tracer.held("graphs").size == 0
    swapped = SampleTracer()
    swapped.AddEvent(samples["ttbar"].events)
    swapped.AddGraph(path)
    h = with_graphs[0]
    assert_graphs_equal(swapped[h].release_graph(), graphs_of(read_graphs(samples["ttbar"].graphs), h))


def test_release_selection_against_file(samples):
    tracer = full_tracer(samples)
    for s in samples.values():
        selected = read_selection(s.selections)
        passing = set(selected["index/hash"].tolist())
        with EventsFile(s.events) as f:
            hashes = f.read().index["hash"]
        for h in hashes.tolist():
            result = tracer[h].release_selection()
            assert result["passed"] == (h in passing)
            rows = selected["index/hash"] == h
            for name in ("ht", "lead"):
                np.testing.assert_array_equal(result[name], selected[f"derived/{name}"][rows])
            np.testing.assert_array_equal(result["item"], selected["index/item"][rows])
    only_ttbar = SampleTracer()
    only_ttbar.AddEvent(samples["ttbar"].events)
    only_ttbar.AddEvent(samples["zjets"].events)
    assert only_ttbar[only_ttbar.hashes[0]].release_selection() is None
    only_ttbar.AddSelections(samples["ttbar"].selections)
    assert only_ttbar[only_ttbar.hashes[0]].release_selection() is not None
    assert only_ttbar[only_ttbar.hashes[-1]].release_selection() is None


def test_restore_flush_dump_selections(samples, tmp_path):
    tracer = full_tracer(samples, OutputDirectory=str(tmp_path))
    tracer.RestoreSelections()
    originals = [read_selection(s.selections) for s in samples.values()]
    passing = np.concatenate([o["index/hash"] for o in originals])
    np.testing.assert_array_equal(tracer.held("selections"), np.sort(passing))
    path = tracer.DumpSelections()
    assert path == tmp_path / "tracerflow" / "selections.h5"
    dumped = read_selection(path)
    for key in originals[0]:
        if key not in ("index/sample", "index/file"):
            np.testing.assert_array_equal(dumped[key], np.concatenate([o[key] for o in originals]), err_msg=key)
    flows = [read_cutflow(s.selections) for s in samples.values()]
    assert [row[:2] for row in read_cutflow(path)] == [(a[0], a[1] + b[1]) for a, b in zip(*flows)]
    swapped = SampleTracer()
    for s in samples.values():
        swapped.AddEvent(s.events)
    swapped.AddSelections(path)
    for ev in swapped:
        want, got = tracer[ev.hash].release_selection(), ev.release_selection()
        assert got["passed"] == want["passed"]
        np.testing.assert_array_equal(got["ht"], want["ht"])
    tracer.FlushSelections(passing[:2])
    assert len(tracer.held("selections")) == len(passing) - 2
    tracer.FlushSelections()
    assert tracer.held("selections").size == 0
