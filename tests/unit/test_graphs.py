"""Graph topologies and GraphTemplate features evaluated by graphs_of_batch."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.graphs.build import graphs_of_batch
from tracerflow.graphs.topology import DeltaRCut, FullyConnected, KNearest, all_pairs, topology_from_config
from tracerflow.templates.event import TemplateError
from tracerflow.templates.graph import GraphTemplate, declared


def coords_of(eta, phi, dtype=float):
    table = {"eta": np.asarray(eta, dtype), "phi": np.asarray(phi, dtype)}
    return lambda name: table[name]


def dr2(eta, phi, a, b):
    dphi = phi[a] - phi[b]
    dphi = dphi - np.asarray(2 * np.pi, dphi.dtype) * np.round(dphi / np.asarray(2 * np.pi, dphi.dtype))
    return (eta[a] - eta[b]) ** 2 + dphi ** 2


def edge_list(edges):
    return list(zip(edges.src.tolist(), edges.dst.tolist()))


def random_graphs(seed, n_graphs=40, max_nodes=9):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_nodes + 1, n_graphs)
    counts[:3] = [0, 1, 2]
    n = int(counts.sum())
    return counts, rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)


# ---------------------------------------------------------------- topologies

def test_fully_connected_counts_and_no_self_loops():
    counts, eta, phi = random_graphs(0)
    edges = FullyConnected().edges(counts, coords_of(eta, phi))
    np.testing.assert_array_equal(edges.counts, counts * (counts - 1))
    assert np.all(edges.src != edges.dst)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    expected = [(offsets[g] + i, offsets[g] + j) for g, c in enumerate(counts) for i in range(c) for j in range(c) if i != j]
    assert edge_list(edges) == expected
    np.testing.assert_array_equal(edges.src_local, edges.src - np.repeat(offsets[:-1], edges.counts))
    np.testing.assert_array_equal(edges.dst_local, edges.dst - np.repeat(offsets[:-1], edges.counts))


def test_fully_connected_with_self_loops():
    counts = np.array([0, 1, 3])
    edges = FullyConnected(self_loops=True).edges(counts, coords_of([], []))
    np.testing.assert_array_equal(edges.counts, [0, 1, 9])
    assert edge_list(edges)[:4] == [(0, 0), (1, 1), (1, 2), (1, 3)]
    assert len(edges.src) == 10


def test_all_pairs_of_empty_chunk():
    graph, src, dst, offsets = all_pairs(np.zeros(0, np.int64), False)
    assert len(graph) == len(src) == len(dst) == len(offsets) == 0
    edges = KNearest(k=3).edges(np.zeros(0, np.int64), coords_of([], []))
    assert len(edges.counts) == 0 and len(edges.src) == 0


def brute_knn(counts, eta, phi, k):
    out = []
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for g, c in enumerate(counts):
        for i in range(c):
            a = offsets[g] + i
            others = [offsets[g] + j for j in range(c) if j != i]
            ranked = sorted(others, key=lambda b: (dr2(eta, phi, a, b), b))[:k]
            out.extend((a, b) for b in sorted(ranked))
    return out


@pytest.mark.parametrize("k", [1, 3, 20])
def test_knn_matches_brute_force(k):
    counts, eta, phi = random_graphs(k)
    edges = KNearest(k=k).edges(counts, coords_of(eta, phi))
    np.testing.assert_array_equal(edges.counts, counts * np.minimum(k, np.maximum(counts - 1, 0)))
    assert edge_list(edges) == brute_knn(counts, eta, phi, k)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_float32_with_ties_matches_brute_force(k):
    counts, eta, phi = random_graphs(k)
    eta, phi = (np.round(x * 4) / 4 for x in (eta, phi))
    eta, phi = eta.astype(np.float32), phi.astype(np.float32)
    edges = KNearest(k=k).edges(counts, coords_of(eta, phi, np.float32))
    assert edge_list(edges) == brute_knn(counts, eta, phi, k)


def test_knn_ties_broken_by_target_index():
    # from node 0 (eta 0) nodes 1 (eta -1) and 2 (eta +1) are exactly equally far
    edges = KNearest(k=1).edges(np.array([3]), coords_of([0.0, -1.0, 1.0], [0.0, 0.0, 0.0]))
    assert edge_list(edges) == [(0, 1), (1, 0), (2, 0)]
    # distances in phi wrap at +-pi: node 1 is 0.15 from node 0 through the wrap, node 2 is 0.2 away
    edges = KNearest(k=1).edges(np.array([3]), coords_of([0.0, 0.0, 0.0], [np.pi - 0.1, -np.pi + 0.05, np.pi - 0.3]))
    assert edge_list(edges) == [(0, 1), (1, 0), (2, 0)]


def test_knn_uses_named_coordinates():
    table = {"y": np.array([0.0, 5.0, 0.1]), "az": np.zeros(3)}
    edges = KNearest(k=1, eta="y", phi="az").edges(np.array([3]), lambda name: table[name])
    assert edge_list(edges) == [(0, 2), (1, 2), (2, 0)]


@pytest.mark.parametrize("max_dr", [0.3, 1.0, 2.5])
def test_delta_r_cut_matches_brute_force(max_dr):
    counts, eta, phi = random_graphs(int(max_dr * 10))
    edges = DeltaRCut(max_dr=max_dr).edges(counts, coords_of(eta, phi))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    expected = []
    for g, c in enumerate(counts):
        for i in range(c):
            for j in range(c):
                a, b = offsets[g] + i, offsets[g] + j
                dphi = abs(phi[a] - phi[b])
                dphi = min(dphi, 2 * np.pi - dphi)
                d = np.hypot(eta[a] - eta[b], dphi)
                assert abs(d - max_dr) > 1e-9  # no borderline pairs in this data
                if i != j and d < max_dr:
                    expected.append((a, b))
    assert edge_list(edges) == expected
    assert 0 < len(expected) < int((counts * (counts - 1)).sum())
    assert edges.counts.sum() == len(expected)


def test_topology_from_config_and_describe():
    for topo in (FullyConnected(), FullyConnected(self_loops=True), KNearest(k=2, eta="y"), DeltaRCut(max_dr=0.8)):
        assert topology_from_config(topo.describe()) == topo
    assert topology_from_config({}) == FullyConnected()
    with pytest.raises(ValueError, match="topology type 'ring'"):
        topology_from_config({"type": "ring"})


# ---------------------------------------------------------------- templates on a batch

class TracksInJets(GraphTemplate):
    level = "jets"
    nodes = "tracks"
    topology = FullyConnected()
    node_features = {"pt": "tracks.pt", "d0x10": "tracks.d0 * 10", "jet_pt": "jets.pt"}
    edge_features = {"dpt": "src.pt - dst.pt", "dr": "delta_r(src.eta, src.phi, dst.eta, dst.phi)",
                     "jet_pt": "src.jets.pt"}
    graph_features = {"ntrk": "count(tracks)", "pt": "jets.pt", "met": "met"}
    node_truth = {"pos": "tracks.d0 > 0"}
    edge_truth = {"same_sign": "(src.d0 > 0) == (dst.d0 > 0)"}
    graph_truth = {"is_b": "jets.label == 5"}


def test_one_graph_per_jet_with_tracks_as_nodes(batch):
    out = graphs_of_batch(TracksInJets(), batch, np.float32)
    h = batch.index["hash"]
    np.testing.assert_array_equal(out["index/hash"], h[[0, 0, 2, 2, 2]])
    np.testing.assert_array_equal(out["index/entry"], [0, 0, 2, 2, 2])
    np.testing.assert_array_equal(out["index/item"], [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(out["nodes/counts"], [1, 2, 0, 0, 3])
    np.testing.assert_array_equal(out["edges/counts"], [0, 2, 0, 0, 6])
    assert out["edges/index"].tolist() == [[0, 1], [1, 0], [0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    # nodes: tracks.pt, tracks.d0 * 10, owning jet pt
    np.testing.assert_allclose(out["nodes/x"], np.array([
        [1, 0.1, 10], [2, -0.2, 20], [3, 0.3, 20], [4, 5, 15], [5, -4, 15], [6, 0, 15]], np.float32), rtol=1e-6)
    assert out["nodes/x"].dtype == np.float32
    # edges (global track index pairs): (1,2), (2,1), (3,4), (3,5), (4,3), (4,5), (5,3), (5,4)
    pt = np.array([1, 2, 3, 4, 5, 6.0])
    eta = batch.tables["tracks"].fields["eta"]
    phi = batch.tables["tracks"].fields["phi"]
    pairs = [(1, 2), (2, 1), (3, 4), (3, 5), (4, 3), (4, 5), (5, 3), (5, 4)]
    expected_dr = [np.hypot(eta[a] - eta[b], phi[a] - phi[b]) for a, b in pairs]
    np.testing.assert_allclose(out["edges/x"][:, 0], [pt[a] - pt[b] for a, b in pairs])
    np.testing.assert_allclose(out["edges/x"][:, 1], expected_dr, rtol=1e-6)
    np.testing.assert_allclose(out["edges/x"][:, 2], [20, 20, 15, 15, 15, 15, 15, 15])
    np.testing.assert_allclose(out["graph/x"], [[1, 10, 50], [2, 20, 50], [0, 30, 70], [0, 5, 70], [3, 15, 70]])
    np.testing.assert_array_equal(out["truth/nodes"][:, 0], [1, 0, 1, 1, 0, 0])
    assert out["truth/nodes"].dtype == np.float32
    # d0 signs: t1 -, t2 +, t3 +, t4 -, t5 0 (not > 0)
    np.testing.assert_array_equal(out["truth/edges"][:, 0], [0, 0, 0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(out["truth/graph"][:, 0], [0, 1, 0, 0, 1])


def test_one_graph_per_event_with_jets_as_nodes(batch):
    class JetsInEvents(GraphTemplate):
        nodes = "jets"
        topology = FullyConnected(self_loops=True)
        node_features = {"pt": "jets.pt", "ntrk": "count(tracks)"}
        graph_features = {"njet": "count(jets)", "ht": "sum(jets.pt)"}
        edge_features = {"ptsum": "src.pt + dst.pt"}

    out = graphs_of_batch(JetsInEvents(), batch, np.float16)
    np.testing.assert_array_equal(out["index/hash"], batch.index["hash"])
    np.testing.assert_array_equal(out["index/item"], [0, 0, 0])
    np.testing.assert_array_equal(out["nodes/counts"], [2, 0, 3])
    np.testing.assert_array_equal(out["edges/counts"], [4, 0, 9])
    assert out["nodes/x"].dtype == np.float16
    np.testing.assert_allclose(out["nodes/x"], [[10, 1], [20, 2], [30, 0], [5, 0], [15, 3]])
    np.testing.assert_allclose(out["graph/x"], [[2, 30], [0, 0], [3, 50]])
    np.testing.assert_allclose(out["edges/x"][:4, 0], [20, 30, 30, 40])
    assert out["truth/nodes"].shape == (5, 0)
    assert out["truth/graph"].shape == (3, 0)


def test_per_event_graph_of_grandchildren_with_knn(batch):
    tmpl = declared({"nodes": "tracks", "topology": {"type": "knn", "k": 1},
                     "node_features": {"pt": "tracks.pt"}})
    out = graphs_of_batch(tmpl, batch, np.float32)
    np.testing.assert_array_equal(out["nodes/counts"], [3, 0, 3])
    np.testing.assert_array_equal(out["edges/counts"], [3, 0, 3])
    # event 0 tracks (eta, phi): (0.1, 0), (-1.1, 3.1), (-0.9, 2.9): 1 and 2 are closest to each other
    assert out["edges/index"].tolist()[:3] == [[0, 2], [1, 2], [2, 1]]


def test_edge_scope_names(batch):
    class T(GraphTemplate):
        level = "jets"
        nodes = "tracks"
        edge_features = {"x": "pt"}

    with pytest.raises(TemplateError, match="src.<field> or dst.<field>"):
        graphs_of_batch(T(), batch, np.float32)
    T.edge_features = {"x": "mid.pt"}
    with pytest.raises(TemplateError, match="edge_features.x"):
        graphs_of_batch(T(), batch, np.float32)


def test_callable_features_and_add_feature_api(batch):
    class T(GraphTemplate):
        level = "jets"
        nodes = "tracks"

    tmpl = T()
    tmpl.AddNodeFeature(lambda s: s["tracks.pt"] * 2, "pt2")
    tmpl.AddEdgeFeature(lambda s: s["dst.pt"], "dst_pt")
    tmpl.AddGraphFeature("jets.eta", "eta")
    tmpl.AddNodeTruthFeature(lambda s: s["tracks.d0"] < 0, "neg")
    tmpl.AddEdgeTruthFeature("src.pt > dst.pt", "harder")
    tmpl.AddGraphTruthFeature("jets.label", "label")
    out = graphs_of_batch(tmpl, batch, np.float32)
    np.testing.assert_allclose(out["nodes/x"][:, 0], [2, 4, 6, 8, 10, 12])
    np.testing.assert_allclose(out["edges/x"][:, 0], [3, 2, 5, 6, 4, 6, 4, 5])
    np.testing.assert_allclose(out["graph/x"][:, 0], [0.1, -1.0, 2.0, 0.5, -2.6], rtol=1e-6)
    np.testing.assert_array_equal(out["truth/nodes"][:, 0], [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(out["truth/edges"][:, 0], [0, 1, 0, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(out["truth/graph"][:, 0], [0, 5, 4, 0, 5])
    d = tmpl.describe()
    assert d["level"] == "jets" and d["nodes"] == "tracks"
    assert d["node_features"] == ["pt2"] and d["graph_truth"] == ["label"]
    assert d["topology"] == {"type": "fully_connected", "self_loops": False}
    with pytest.raises(TemplateError, match="feature kind 'vertex_features'"):
        tmpl.add_feature("vertex_features", "x", "tracks.pt")


def test_template_errors(batch):
    with pytest.raises(TemplateError, match="no node collection"):
        type("NoNodes", (GraphTemplate,), {})()
    with pytest.raises(TemplateError, match="node_features.bad"):
        type("BadExpr", (GraphTemplate,), {"nodes": "jets", "node_features": {"bad": "jets.pt.mean()"}})()
    upside_down = type("Up", (GraphTemplate,), {"level": "tracks", "nodes": "jets"})()
    with pytest.raises(TemplateError, match="not below graph level 'tracks'"):
        graphs_of_batch(upside_down, batch, np.float32)
    wrong_shape = type("Shape", (GraphTemplate,), {"nodes": "jets", "graph_features": {"x": lambda s: np.ones(2)}})()
    with pytest.raises(TemplateError, match=r"graph_features.x: gave shape \(2,\), expected \(3,\)"):
        graphs_of_batch(wrong_shape, batch, np.float32)
    unreduced = type("Unreduced", (GraphTemplate,), {"nodes": "jets", "graph_features": {"x": "jets.pt"}})()
    with pytest.raises(TemplateError, match="reduce"):
        graphs_of_batch(unreduced, batch, np.float32)
