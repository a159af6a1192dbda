"""Message passing over a batch of graphs in plain torch, and the conversion of padded tracks to graphs (fully connected or kNN)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from tracerflow.models.blocks import mlp

READOUTS = ("sum", "mean")


def tracks_to_graph(
    tracks: Tensor, valid: Tensor, edge_columns: Tensor, k: Optional[int] = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Padded (B, T, F) tracks -> (x, edge_index, edge_attr, batch, n_graphs), edges within each jet.

    Nodes are the valid tracks in jet-major order. Without ``k`` edges join every ordered pair
    of distinct tracks of a jet; with ``k`` each track receives edges from its ``k`` nearest
    other tracks in the ``edge_columns`` coordinates (fewer in jets with fewer tracks). No self
    loops; edge features are ``x_src - x_dst`` over ``edge_columns`` (a long tensor of column
    indices, possibly empty).
    """
    valid = valid.to(torch.bool)
    n_graphs, n_slots = valid.shape[0], valid.shape[1]
    x, node_of_slot, batch = _nodes(tracks, valid)
    cols = edge_columns.to(tracks.device)
    pairs = _candidate_pairs(valid)
    if k is not None and n_slots > 1:
        nearest = _nearest(tracks.index_select(2, cols), pairs, min(int(k), n_slots - 1)).indices
        pairs = pairs & torch.zeros_like(pairs).scatter(2, nearest, True)
    jet_dst_src = pairs.nonzero()
    first_slot = jet_dst_src[:, 0] * n_slots
    dst = node_of_slot[first_slot + jet_dst_src[:, 1]]
    src = node_of_slot[first_slot + jet_dst_src[:, 2]]
    edge_index = torch.stack([src, dst], dim=0)
    coords = x.index_select(1, cols)
    edge_attr = coords.index_select(0, src) - coords.index_select(0, dst)
    return x, edge_index, edge_attr, batch, n_graphs


def tracks_to_knn(
    tracks: Tensor, valid: Tensor, edge_columns: Tensor, k: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
    """Padded tracks -> (x, neighbours, has, edge_attr, batch, n_graphs): the kNN graph of
    :func:`tracks_to_graph` as a (N, k) table of each node's incoming neighbours.

    ``has`` (N, k) marks real neighbours (a jet of n tracks gives each node n - 1 < k of them; the
    other entries point at the node itself and are masked); ``edge_attr`` (N, k, C) is
    ``x_neighbour - x_node`` over ``edge_columns``.
    """
    valid = valid.to(torch.bool)
    n_graphs, n_slots = valid.shape[0], valid.shape[1]
    x, node_of_slot, batch = _nodes(tracks, valid)
    cols = edge_columns.to(tracks.device)
    coords = x.index_select(1, cols)
    self_index = torch.arange(x.shape[0], device=tracks.device)
    n_near = min(int(k), n_slots - 1)
    if n_near < 1:
        empty = self_index.unsqueeze(1)[:, :0]
        return x, empty, empty.to(torch.bool), coords.unsqueeze(1)[:, :0], batch, n_graphs
    nearest = _nearest(tracks.index_select(2, cols), _candidate_pairs(valid), n_near)
    has = torch.isfinite(nearest.values)[valid]
    slots = batch.unsqueeze(1) * n_slots + nearest.indices[valid]
    neighbours = torch.where(has, node_of_slot[slots], self_index.unsqueeze(1))
    edge_attr = coords[neighbours] - coords.unsqueeze(1)
    return x, neighbours, has, edge_attr, batch, n_graphs


def _nodes(tracks: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x, node_of_slot, batch): valid tracks in jet-major order, each slot's node number, each node's jet."""
    n_graphs, n_slots = valid.shape[0], valid.shape[1]
    flat_valid = valid.reshape(-1)
    x = tracks.reshape(n_graphs * n_slots, tracks.shape[-1])[flat_valid]
    node_of_slot = torch.cumsum(flat_valid.long(), dim=0) - 1
    batch = torch.arange(n_graphs, device=tracks.device).repeat_interleave(n_slots)[flat_valid]
    return x, node_of_slot, batch


def _candidate_pairs(valid: Tensor) -> Tensor:
    """(B, T, T) mask of ordered pairs of distinct valid slots of the same jet."""
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1)
    return pairs & ~torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device).unsqueeze(0)


def _nearest(coords: Tensor, pairs: Tensor, k: int):
    """The ``k`` candidates (``pairs``) nearest each slot in ``coords`` (B, T, C), as ``topk`` values
    (squared distances, inf where a slot has fewer candidates) and slot indices, each (B, T, k)."""
    dist = (coords.unsqueeze(2) - coords.unsqueeze(1)).square().sum(dim=-1)
    return dist.masked_fill(~pairs, float("inf")).topk(k, dim=2, largest=False)


class MessagePassingLayer(nn.Module):
    """One round: message = act(W [x_src, x_dst, e] + b), summed at the destination, update = act(U [x, agg] + c).

    ``W`` is applied in parts, ``W_src x`` and ``W_dst x`` once per node and only gathered per
    edge, so an edge costs an add and an activation instead of a matrix product.
    """

    def __init__(self, n_node: int, n_edge: int, hidden: int, activation: str = "relu", norm: str | None = None) -> None:
        super().__init__()
        self.hidden, self.n_node = int(hidden), int(n_node)
        message = list(mlp(2 * n_node + n_edge, (hidden,), activation, norm))
        self.message_linear, self.message_act = message[0], nn.Sequential(*message[1:])
        self.update = mlp(n_node + hidden, (hidden,), activation, norm)

    def message(self, joined: Tensor) -> Tensor:
        """The message of edges given as rows ``[x_src, x_dst, e]`` (what :meth:`forward` computes in parts)."""
        return self.message_act(self.message_linear(joined))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """(N, F) nodes -> (N, hidden) nodes."""
        src, dst = edge_index[0], edge_index[1]
        linear = self.message_linear
        w_src, w_dst, w_edge = linear.weight.split([self.n_node, self.n_node, edge_attr.shape[1]], dim=1)
        pre = torch.addmm(linear.bias, edge_attr, w_edge.t())
        pre += (x @ w_src.t()).index_select(0, src)
        pre += (x @ w_dst.t()).index_select(0, dst)
        msg = self.message_act(pre)
        agg = x.new_zeros(x.shape[0], self.hidden).index_add_(0, dst, msg)
        return self.update(torch.cat([x, agg], dim=1))

    def forward_neighbours(self, x: Tensor, neighbours: Tensor, has: Tensor, edge_attr: Tensor) -> Tensor:
        """:meth:`forward` over a (N, k) neighbour table: the destination term is broadcast, not gathered,
        and the aggregation is a sum over k, not a scatter."""
        linear = self.message_linear
        w_src, w_dst, w_edge = linear.weight.split([self.n_node, self.n_node, edge_attr.shape[2]], dim=1)
        n, k = neighbours.shape[0], neighbours.shape[1]
        pre = torch.matmul(edge_attr, w_edge.t())
        pre += (x @ w_src.t()).index_select(0, neighbours.reshape(-1)).view(n, k, self.hidden)
        pre += torch.addmm(linear.bias, x, w_dst.t()).unsqueeze(1)
        msg = self.message_act(pre.view(n * k, self.hidden)).view(n, k, self.hidden)
        agg = (msg * has.unsqueeze(2).to(msg.dtype)).sum(dim=1)
        return self.update(torch.cat([x, agg], dim=1))


class MessagePassing(nn.Module):
    """A stack of message-passing layers and a per-graph sum or mean readout: (N, F) nodes -> (G, hidden)."""

    def __init__(
        self,
        n_node: int,
        n_edge: int,
        hidden: int = 64,
        n_layers: int = 2,
        activation: str = "relu",
        norm: str | None = None,
        readout: str = "sum",
    ) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; expected one of {READOUTS}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        dims = [int(n_node)] + [int(hidden)] * n_layers
        self.layers = nn.ModuleList(
            [MessagePassingLayer(dims[k], n_edge, hidden, activation, norm) for k in range(n_layers)]
        )
        self.hidden = int(hidden)
        self.mean = readout == "mean"
        self.out_dim = int(hidden)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, n_graphs: int) -> Tensor:
        """Node features, (2, E) global edge index, (E, Fe) edge features, (N,) graph ids -> (n_graphs, hidden)."""
        for layer in self.layers:
            x = layer(x, edge_index, edge_attr)
        return self.readout(x, batch, n_graphs)

    def forward_neighbours(self, x: Tensor, neighbours: Tensor, has: Tensor, edge_attr: Tensor, batch: Tensor,
                           n_graphs: int) -> Tensor:
        """:meth:`forward` over the neighbour table of :func:`tracks_to_knn`."""
        for layer in self.layers:
            x = layer.forward_neighbours(x, neighbours, has, edge_attr)
        return self.readout(x, batch, n_graphs)

    def readout(self, x: Tensor, batch: Tensor, n_graphs: int) -> Tensor:
        """Per-graph sum or mean of the node states."""
        out = x.new_zeros(n_graphs, self.hidden).index_add_(0, batch, x)
        if self.mean:
            count = x.new_zeros(n_graphs).index_add_(0, batch, torch.ones_like(batch, dtype=x.dtype))
            out = out / count.clamp(min=1).unsqueeze(1)
        return out


class GraphSetEncoder(nn.Module):
    """The GNN as a track set encoder: padded tracks -> graphs per jet (fully connected, or the ``k``
    nearest neighbours in ``edge_columns``) -> :class:`MessagePassing`.

    kNN graphs run on the (N, k) neighbour table, except with batch norm, whose statistics must
    see real edges only (the table's masked entries would enter them).
    """

    def __init__(
        self,
        n_in: int,
        edge_columns: Sequence[int] = (),
        hidden: int = 64,
        n_layers: int = 2,
        activation: str = "relu",
        norm: str | None = None,
        readout: str = "sum",
        k: int | None = None,
    ) -> None:
        super().__init__()
        cols = [int(c) for c in edge_columns]
        bad = [c for c in cols if not 0 <= c < n_in]
        if bad:
            raise ValueError(f"edge_columns {bad} are outside the {n_in} track columns")
        if k is not None and (k < 1 or not cols):
            raise ValueError(f"k={k}: kNN edges need k >= 1 and edge_columns to measure distance in")
        self.n_in, self.k = int(n_in), None if k is None else int(k)
        self.register_buffer("edge_columns", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.gnn = MessagePassing(n_in, len(cols), hidden, n_layers, activation, norm, readout)
        self.neighbour_table = norm != "batch"
        self.out_dim = self.gnn.out_dim

    def forward(self, tracks: Tensor, valid: Tensor) -> Tensor:
        """(B, T, F) tracks and (B, T) bool mask -> (B, hidden); jets without tracks read out zeros."""
        k = self.k
        if k is not None and self.neighbour_table:
            x, neighbours, has, edge_attr, batch, n_graphs = tracks_to_knn(tracks, valid, self.edge_columns, k)
            return self.gnn.forward_neighbours(x, neighbours, has, edge_attr, batch, n_graphs)
        x, edge_index, edge_attr, batch, n_graphs = tracks_to_graph(tracks, valid, self.edge_columns, k)
        return self.gnn(x, edge_index, edge_attr, batch, n_graphs)
