"""Round trips through the events, graphs and selections HDF5 layouts."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tracerflow.columns import EventBatch, Table
from tracerflow.graphs.build import build_graphs, graphs_of_batch
from tracerflow.graphs.topology import KNearest
from tracerflow.io import events_file
from tracerflow.io.events_file import EventsFile
from tracerflow.io.graphs_file import GraphsFile
from tracerflow.io.h5target import H5Writer, SchemaMismatch, read_root_attrs
from tracerflow.io.selections_file import read_cutflow, read_selection
from tracerflow.selections.apply import apply_selection
from tracerflow.templates.graph import GraphTemplate
from tracerflow.templates.selection import SelectionTemplate

from .helpers import assert_batches_equal, random_batch, rows_mask

N = 103


def same_cutflow(got, expected):
    assert [(n, p) for n, p, _ in got] == [(n, p) for n, p, _ in expected]
    np.testing.assert_allclose([w for *_, w in got], [w for *_, w in expected], rtol=1e-12)


def write_events(path, batch: EventBatch, chunk: int) -> None:
    with H5Writer(path, events_file.SCHEMA, events_file.SCHEMA_VERSION, "dig", "BuildEvents(test)") as w:
        for start in range(0, len(batch), chunk):
            events_file.append_batch(w, batch.take(rows_mask(len(batch), start, start + chunk)))
        events_file.finish(w, batch, ["ttbar"], ["dir/a.root"])


@pytest.fixture(scope="module")
def big():
    return random_batch(N, seed=5)


@pytest.fixture(scope="module")
def events_path(tmp_path_factory, big):
    path = tmp_path_factory.mktemp("events") / "events.h5"
    write_events(path, big, chunk=17)
    return path


# ---------------------------------------------------------------- events

def test_events_round_trip(events_path, big):
    with EventsFile(events_path) as f:
        assert len(f) == N
        assert f.collections == ["jets", "tracks"]
        assert f.parents == {"jets": "event", "tracks": "jets"}
        assert f.labels("sample") == ["ttbar"]
        assert f.labels("file") == ["dir/a.root"]
        assert f.attrs["n_events"] == N
        assert sorted(f.fields("jets")) == ["eta", "label", "phi", "pt"]
        assert_batches_equal(f.read(), big)
    attrs = read_root_attrs(events_path)
    assert attrs["complete"] is True and attrs["schema"] == events_file.SCHEMA


def test_events_layout_is_plain_h5py(events_path, big):
    with h5py.File(events_path, "r") as f:
        assert f["index/hash"].dtype == np.uint64
        assert f["jets/counts"].dtype == np.uint32
        assert f["tracks"].attrs["parent"] == "jets"
        assert json.loads(f.attrs["collections"]) == ["jets", "tracks"]
        np.testing.assert_array_equal(f["tracks/pt"][:], big.tables["tracks"].fields["pt"])
        assert len(f["tracks/counts"]) == len(big.tables["jets"])


@pytest.mark.parametrize("start, stop", [(0, 1), (5, 40), (17, 34), (50, 51), (60, N), (90, 1000), (N, N), (0, 0)])
def test_events_slices(events_path, big, start, stop):
    with EventsFile(events_path) as f:
        got = f.read(start, stop)
    assert_batches_equal(got, big.take(rows_mask(N, start, stop)))


def test_events_field_restriction(events_path, big):
    with EventsFile(events_path) as f:
        got = f.read(10, 60, fields={"tracks": ["pt"]})
        ref = big.take(rows_mask(N, 10, 60))
        # the parent jets come along with their counts only; event scalars are not restricted
        assert set(got.tables) == {"jets", "tracks"}
        assert got.tables["jets"].fields == {}
        np.testing.assert_array_equal(got.tables["jets"].counts, ref.tables["jets"].counts)
        assert list(got.tables["tracks"].fields) == ["pt"]
        np.testing.assert_array_equal(got.tables["tracks"].fields["pt"], ref.tables["tracks"].fields["pt"])
        np.testing.assert_array_equal(got.tables["tracks"].counts, ref.tables["tracks"].counts)
        assert set(got.event) == {"met", "weight", "run"}

        got = f.read(10, 60, fields={"event": ["met"], "jets": ["pt", "label"]})
        assert set(got.tables) == {"jets"}
        assert set(got.event) == {"met"}
        assert set(got.tables["jets"].fields) == {"pt", "label"}
        np.testing.assert_array_equal(got.tables["jets"].fields["label"], ref.tables["jets"].fields["label"])
        np.testing.assert_array_equal(got.event["met"], ref.event["met"])
        np.testing.assert_array_equal(got.index["hash"], ref.index["hash"])

        got = f.read(fields={"event": []})
        assert got.event == {} and got.tables == {}
        assert len(got) == N


def test_events_iter_chunks(events_path, big):
    with EventsFile(events_path) as f:
        chunks = list(f.iter_chunks(40))
    assert [len(c) for c in chunks] == [40, 40, 23]
    assert_batches_equal(chunks[2], big.take(rows_mask(N, 80, N)))


def test_events_empty_file(tmp_path, big):
    path = tmp_path / "empty.h5"
    empty = big.take(np.zeros(N, bool))
    with H5Writer(path, events_file.SCHEMA, events_file.SCHEMA_VERSION, "d", "t") as w:
        events_file.finish(w, empty, ["s"], ["f"])
    with EventsFile(path) as f:
        assert len(f) == 0
        got = f.read()
    assert_batches_equal(got, empty)


def test_events_reserved_collection_name(tmp_path):
    batch = random_batch(3)
    batch.tables["index"] = Table(counts=np.zeros(3, np.int64), fields={})
    with pytest.raises(ValueError, match="reserved"):
        with H5Writer(tmp_path / "x.h5", events_file.SCHEMA, 1, "d", "t") as w:
            events_file.append_batch(w, batch)
    assert not (tmp_path / "x.h5").exists()


def test_events_file_refuses_other_or_incomplete_files(tmp_path, events_path):
    other = tmp_path / "other.h5"
    with H5Writer(other, "tracerflow.graphs", 1, "d", "t") as w:
        w.append("x", np.arange(2))
    with pytest.raises(SchemaMismatch, match="expected 'tracerflow.events'"):
        EventsFile(other)
    broken = tmp_path / "broken.h5"
    broken.write_bytes(events_path.read_bytes())
    with h5py.File(broken, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(SchemaMismatch, match="not complete"):
        EventsFile(broken)


# ---------------------------------------------------------------- graphs

class TrackGraphs(GraphTemplate):
    level = "jets"
    nodes = "tracks"
    topology = KNearest(k=2)
    node_features = {"pt": "tracks.pt", "d0": "tracks.d0"}
    edge_features = {"dpt": "src.pt - dst.pt"}
    graph_features = {"pt": "jets.pt", "ntrk": "count(tracks)"}
    node_truth = {"pos": "tracks.d0 > 0"}
    edge_truth = {}
    graph_truth = {"label": "jets.label"}


@pytest.fixture(scope="module")
def graphs_path(tmp_path_factory, events_path):
    path = tmp_path_factory.mktemp("graphs") / "graphs.h5"
    stats = build_graphs(events_path, path, TrackGraphs(), config_digest="g", created_by="BuildGraphs(test)",
                         chunk_size=13)
    return path, stats


def test_build_graphs_matches_one_chunk(graphs_path, big):
    path, stats = graphs_path
    ref = graphs_of_batch(TrackGraphs(), big, np.float32)
    assert stats.graphs == len(big.tables["jets"])
    assert stats.nodes == len(big.tables["tracks"])
    assert stats.edges == len(ref["edges/index"])
    with GraphsFile(path) as g:
        assert len(g) == stats.graphs
        got = g.read()
        assert g.names("nodes/x") == ["pt", "d0"]
        assert g.names("truth/edges") == []
        assert g.names("truth/graph") == ["label"]
        assert json.loads(g.attrs["template"])["topology"] == {"type": "knn", "k": 2, "eta": "eta", "phi": "phi"}
        assert g.attrs["n_graphs"] == stats.graphs
    for key, value in ref.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
        assert got[key].dtype == value.dtype, key
    np.testing.assert_array_equal(got["index/row"], np.arange(stats.graphs))
    assert got["truth/edges"].shape == (stats.edges, 0)


@pytest.mark.parametrize("start, stop", [(0, 5), (7, 31), (100, 10_000), (3, 3)])
def test_graphs_slices(graphs_path, start, stop):
    path, _ = graphs_path
    with GraphsFile(path) as g:
        full = g.read()
        part = g.read(start, stop)
    stop = min(stop, len(full["index/hash"]))
    nodes = np.concatenate([[0], np.cumsum(full["nodes/counts"], dtype=np.int64)])
    edges = np.concatenate([[0], np.cumsum(full["edges/counts"], dtype=np.int64)])
    for key in ("index/hash", "index/item", "index/row", "nodes/counts", "edges/counts", "graph/x", "truth/graph"):
        np.testing.assert_array_equal(part[key], full[key][start:stop], err_msg=key)
    for key in ("nodes/x", "truth/nodes"):
        np.testing.assert_array_equal(part[key], full[key][nodes[start]:nodes[stop]], err_msg=key)
    for key in ("edges/index", "edges/x", "truth/edges"):
        np.testing.assert_array_equal(part[key], full[key][edges[start]:edges[stop]], err_msg=key)
    assert len(part["nodes/x"]) == part["nodes/counts"].sum()
    assert len(part["edges/index"]) == part["edges/counts"].sum()


def test_graphs_of_empty_events_file(tmp_path, big):
    events = tmp_path / "empty_events.h5"
    empty = big.take(np.zeros(N, bool))
    with H5Writer(events, events_file.SCHEMA, events_file.SCHEMA_VERSION, "d", "t") as w:
        events_file.finish(w, empty, ["s"], ["f"])
    out = tmp_path / "g.h5"
    stats = build_graphs(events, out, TrackGraphs(), config_digest="g", created_by="t")
    assert (stats.graphs, stats.nodes, stats.edges) == (0, 0, 0)
    with GraphsFile(out) as g:
        got = g.read()
    assert got["nodes/x"].shape == (0, 2)
    assert got["edges/index"].shape == (0, 2)
    assert got["index/hash"].dtype == np.uint64


# ---------------------------------------------------------------- selections

class EventSel(SelectionTemplate):
    weight = "weight"
    cuts = {"met": "met > 30", "two_jets": "count(jets) >= 2"}
    outputs = {"ht": "sum(jets.pt)", "run": "run"}


def test_apply_selection_round_trip(tmp_path, events_path, big):
    out = tmp_path / "sel.h5"
    flow = apply_selection(events_path, out, EventSel(), config_digest="s", created_by="t", chunk_size=11)
    ref = EventSel().apply(big)
    same_cutflow(read_cutflow(out), ref.cutflow.as_rows())
    rows = read_cutflow(out)
    assert [r[0] for r in rows] == ["all", "met", "two_jets"]
    assert rows[0][1] == N and isinstance(rows[0][1], int)
    same_cutflow(flow.as_rows(), ref.cutflow.as_rows())
    got = read_selection(out)
    passing = np.flatnonzero(ref.mask)
    np.testing.assert_array_equal(got["index/hash"], big.index["hash"][passing])
    np.testing.assert_array_equal(got["index/entry"], big.index["entry"][passing])
    np.testing.assert_array_equal(got["index/row"], passing)
    np.testing.assert_array_equal(got["index/item"], np.zeros(len(passing)))
    np.testing.assert_allclose(got["derived/ht"], ref.outputs["ht"], rtol=1e-6)
    assert got["derived/ht"].dtype == np.float32
    np.testing.assert_array_equal(got["derived/run"], ref.outputs["run"])
    assert got["derived/run"].dtype == np.int64
    attrs = read_root_attrs(out)
    assert attrs["n_passed"] == len(passing) and attrs["level"] == "event"


def test_apply_jet_selection_round_trip(tmp_path, events_path, big):
    class JetSel(SelectionTemplate):
        level = "jets"
        weight = "weight"
        cuts = {"pt": "jets.pt > 100", "b": "jets.label == 5"}
        outputs = {"pt": "jets.pt"}

    out = tmp_path / "jsel.h5"
    apply_selection(events_path, out, JetSel(), config_digest="s", created_by="t", chunk_size=9)
    ref = JetSel().apply(big)
    same_cutflow(read_cutflow(out), ref.cutflow.as_rows())
    got = read_selection(out)
    passing = np.flatnonzero(ref.mask)
    jets = big.tables["jets"]
    np.testing.assert_array_equal(got["index/row"], passing)
    np.testing.assert_array_equal(got["index/item"], jets.local_index()[passing])
    np.testing.assert_array_equal(got["index/hash"], big.index["hash"][jets.parent_row()[passing]])
    np.testing.assert_array_equal(got["derived/pt"], jets.fields["pt"][passing])


def test_selection_that_passes_nothing(tmp_path, events_path):
    class Nothing(SelectionTemplate):
        cuts = {"never": "met < 0"}
        outputs = {"met": "met"}

    out = tmp_path / "none.h5"
    apply_selection(events_path, out, Nothing(), config_digest="s", created_by="t", chunk_size=50)
    assert read_cutflow(out)[1][:2] == ("never", 0)
    got = read_selection(out)
    assert len(got["index/hash"]) == 0 and got["index/hash"].dtype == np.uint64
    assert got["derived/met"].shape == (0,)


def test_read_selection_refuses_other_schema(events_path):
    with pytest.raises(SchemaMismatch):
        read_cutflow(events_path)
    with pytest.raises(SchemaMismatch):
        read_selection(events_path)


# ---------------------------------------------------------------- slices outside [0, len)

def test_events_read_past_the_end_is_empty(events_path, big):
    with EventsFile(events_path) as f:
        got = f.read(N + 5, N + 10)
    assert_batches_equal(got, big.take(np.zeros(N, bool)))


def test_events_read_negative_start_is_consistent(events_path, big):
    with EventsFile(events_path) as f:
        got = f.read(-3)
    assert_batches_equal(got, big.take(rows_mask(N, N - 3, N)))


def test_graphs_read_past_the_end_is_empty(graphs_path):
    path, stats = graphs_path
    with GraphsFile(path) as g:
        got = g.read(stats.graphs + 1, stats.graphs + 5)
    assert len(got["index/hash"]) == 0 and len(got["nodes/x"]) == 0
