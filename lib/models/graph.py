"""Message passing over a batch of graphs in plain torch, and the conversion of padded tracks to fully connected graphs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from tracerflow.models.blocks import mlp

READOUTS = ("sum", "mean")


def tracks_to_graph(
    tracks: Tensor, valid: Tensor, edge_columns: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Padded (B, T, F) tracks -> (x, edge_index, edge_attr, batch, n_graphs), fully connected within each jet.

    Nodes are the valid tracks in jet-major order; edges join every ordered pair of distinct
    tracks of a jet (no self loops); edge features are ``x_src - x_dst`` over ``edge_columns``
    (a long tensor of column indices, possibly empty).
    """
    valid = valid.to(torch.bool)
    n_graphs, n_slots = valid.shape[0], valid.shape[1]
    flat_valid = valid.reshape(-1)
    x = tracks.reshape(n_graphs * n_slots, tracks.shape[-1])[flat_valid]
    node_of_slot = torch.cumsum(flat_valid.long(), dim=0) - 1
    slot_jet = torch.arange(n_graphs, device=tracks.device).repeat_interleave(n_slots)
    batch = slot_jet[flat_valid]
    pairs = valid.unsqueeze(2) & valid.unsqueeze(1)
    pairs = pairs & ~torch.eye(n_slots, dtype=torch.bool, device=tracks.device).unsqueeze(0)
    jet_i_j = pairs.nonzero()
    first_slot = jet_i_j[:, 0] * n_slots
    src = node_of_slot[first_slot + jet_i_j[:, 1]]
    dst = node_of_slot[first_slot + jet_i_j[:, 2]]
    edge_index = torch.stack([src, dst], dim=0)
    cols = edge_columns.to(tracks.device)
    edge_attr = x[src].index_select(1, cols) - x[dst].index_select(1, cols)
    return x, edge_index, edge_attr, batch, n_graphs


class MessagePassingLayer(nn.Module):
    """One round: message = MLP([x_src, x_dst, e]), summed at the destination, update = MLP([x, agg])."""

    def __init__(self, n_node: int, n_edge: int, hidden: int, activation: str = "relu", norm: str | None = None) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.message = mlp(2 * n_node + n_edge, (hidden, hidden), activation, norm)
        self.update = mlp(n_node + hidden, (hidden, hidden), activation, norm)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """(N, F) nodes -> (N, hidden) nodes."""
        src, dst = edge_index[0], edge_index[1]
        msg = self.message(torch.cat([x[src], x[dst], edge_attr], dim=1))
        agg = x.new_zeros(x.shape[0], self.hidden).index_add_(0, dst, msg)
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
        out = x.new_zeros(n_graphs, self.hidden).index_add_(0, batch, x)
        if self.mean:
            count = x.new_zeros(n_graphs).index_add_(0, batch, torch.ones_like(batch, dtype=x.dtype))
            out = out / count.clamp(min=1).unsqueeze(1)
        return out


class GraphSetEncoder(nn.Module):
    """The GNN as a track set encoder: padded tracks -> fully connected graphs per jet -> :class:`MessagePassing`."""

    def __init__(
        self,
        n_in: int,
        edge_columns: Sequence[int] = (),
        hidden: int = 64,
        n_layers: int = 2,
        activation: str = "relu",
        norm: str | None = None,
        readout: str = "sum",
    ) -> None:
        super().__init__()
        cols = [int(c) for c in edge_columns]
        bad = [c for c in cols if not 0 <= c < n_in]
        if bad:
            raise ValueError(f"edge_columns {bad} are outside the {n_in} track columns")
        self.n_in = int(n_in)
        self.register_buffer("edge_columns", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.gnn = MessagePassing(n_in, len(cols), hidden, n_layers, activation, norm, readout)
        self.out_dim = self.gnn.out_dim

    def forward(self, tracks: Tensor, valid: Tensor) -> Tensor:
        """(B, T, F) tracks and (B, T) bool mask -> (B, hidden); jets without tracks read out zeros."""
        x, edge_index, edge_attr, batch, n_graphs = tracks_to_graph(tracks, valid, self.edge_columns)
        return self.gnn(x, edge_index, edge_attr, batch, n_graphs)
