"""Message passing in plain torch and the padded-tracks-to-graph conversion."""
from __future__ import annotations

import pytest
import torch

from tracerflow.models import MessagePassing, tracks_to_graph, tracks_to_knn


def test_tracks_to_graph_fully_connects_valid_tracks_per_jet():
    tracks = torch.arange(3 * 3 * 2, dtype=torch.float32).reshape(3, 3, 2)
    valid = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    x, edge_index, edge_attr, batch, n_graphs = tracks_to_graph(tracks, valid, torch.tensor([1]))
    assert n_graphs == 3
    assert torch.equal(x, tracks[valid])
    assert batch.tolist() == [0, 0, 2, 2, 2]
    edges = set(map(tuple, edge_index.t().tolist()))
    expected = {(0, 1), (1, 0)} | {(a, b) for a in (2, 3, 4) for b in (2, 3, 4) if a != b}
    assert edges == expected and edge_index.shape[1] == len(expected)
    src, dst = edge_index
    assert torch.equal(edge_attr[:, 0], x[src, 1] - x[dst, 1])


def test_tracks_to_graph_without_edge_columns_has_empty_edge_features():
    tracks, valid = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    _, edge_index, edge_attr, _, _ = tracks_to_graph(tracks, valid, torch.zeros(0, dtype=torch.long))
    assert edge_attr.shape == (edge_index.shape[1], 0) == (24, 0)


def test_message_passing_sum_and_mean_readouts():
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    edge_attr = torch.randn(4, 2)
    batch = torch.tensor([0, 0, 2, 2, 2])
    for readout in ("sum", "mean"):
        torch.manual_seed(1)
        gnn = MessagePassing(3, 2, hidden=8, n_layers=2, readout=readout)
        out = gnn(x, edge_index, edge_attr, batch, 4)
        assert out.shape == (4, 8)
        assert torch.all(out[1] == 0) and torch.all(out[3] == 0)
        node_states = x
        for layer in gnn.layers:
            node_states = layer(node_states, edge_index, edge_attr)
        pooled = node_states[2:].sum(0) if readout == "sum" else node_states[2:].mean(0)
        assert torch.allclose(out[2], pooled, atol=1e-6)


def test_message_is_summed_at_destination():
    torch.manual_seed(0)
    gnn = MessagePassing(2, 0, hidden=4, n_layers=1)
    layer = gnn.layers[0]
    x = torch.randn(3, 2)
    edge_index = torch.tensor([[0, 1], [2, 2]])
    out = layer(x, edge_index, torch.zeros(2, 0))
    messages = layer.message(torch.cat([x[[0, 1]], x[[2, 2]]], dim=1))
    agg = torch.stack([torch.zeros(4), torch.zeros(4), messages.sum(0)])
    assert torch.allclose(out, layer.update(torch.cat([x, agg], dim=1)), atol=1e-6)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="readout"):
        MessagePassing(3, 0, readout="max")
    with pytest.raises(ValueError, match="n_layers"):
        MessagePassing(3, 0, n_layers=0)


def _ragged(seed: int = 0, jets: int = 9, slots: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tracks with 0 .. slots valid per jet, padding after the valid ones."""
    g = torch.Generator().manual_seed(seed)
    tracks = torch.randn(jets, slots, 4, generator=g)
    counts = torch.arange(jets) % (slots + 1)
    return tracks, torch.arange(slots).unsqueeze(0) < counts.unsqueeze(1)


def test_knn_edges_are_each_tracks_nearest_in_the_edge_columns():
    tracks, valid = _ragged()
    x, edge_index, edge_attr, batch, _ = tracks_to_graph(tracks, valid, torch.tensor([1, 2]), k=2)
    coords = x[:, 1:3]
    for node in range(x.shape[0]):
        same_jet = torch.nonzero((batch == batch[node]) & (torch.arange(len(batch)) != node)).flatten()
        dist = (coords[same_jet] - coords[node]).square().sum(1)
        expected = set(same_jet[torch.argsort(dist)[:2]].tolist())
        assert set(edge_index[0, edge_index[1] == node].tolist()) == expected
    src, dst = edge_index
    assert torch.equal(edge_attr, coords[src] - coords[dst])


def test_neighbour_table_matches_the_edge_list():
    tracks, valid = _ragged(seed=3)
    cols = torch.tensor([1, 2])
    x, neighbours, has, table_attr, batch, n = tracks_to_knn(tracks, valid, cols, 3)
    _, edge_index, _, _, _ = tracks_to_graph(tracks, valid, cols, k=3)
    listed = {(int(s), int(d)) for s, d in edge_index.t()}
    tabled = {(int(neighbours[d, j]), d) for d in range(len(neighbours)) for j in range(neighbours.shape[1]) if has[d, j]}
    assert tabled == listed
    assert torch.equal(table_attr[has], (x[neighbours, 1:3] - x[:, None, 1:3])[has])
    torch.manual_seed(0)
    gnn = MessagePassing(4, 2, hidden=8, n_layers=2)
    _, edge_index, edge_attr, _, _ = tracks_to_graph(tracks, valid, cols, k=3)
    sparse = gnn(x, edge_index, edge_attr, batch, n)
    dense = gnn.forward_neighbours(x, neighbours, has, table_attr, batch, n)
    torch.testing.assert_close(dense, sparse, rtol=1e-5, atol=1e-6)
    dense.sum().backward()
