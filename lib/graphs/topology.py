"""Graph topologies built for a whole chunk of graphs at once.

Every topology is vectorised over a whole chunk of graphs of different sizes. The fully
connected and Delta-R topologies start from all ordered node pairs and keep a subset; kNN
groups graphs by node count and sorts one (graphs, n, n) distance array per group. Edges come out sorted by graph, then source, then target.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from tracerflow.templates.fourvector import wrap_phi

Coordinates = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Edges:
    """Edges of a chunk of graphs: per-graph counts, local and chunk-global node indices."""

    counts: np.ndarray
    src_local: np.ndarray
    dst_local: np.ndarray
    src: np.ndarray
    dst: np.ndarray


def all_pairs(node_counts: np.ndarray, self_loops: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Graph, local source and local target of every ordered node pair, plus node offsets."""
    node_counts = np.asarray(node_counts, dtype=np.int64)
    node_offsets = np.concatenate([[0], np.cumsum(node_counts)])[:-1]
    pairs = node_counts * node_counts
    graph = np.repeat(np.arange(len(node_counts), dtype=np.int64), pairs)
    start = np.repeat(np.concatenate([[0], np.cumsum(pairs)])[:-1], pairs)
    local = np.arange(int(pairs.sum()), dtype=np.int64) - start
    size = node_counts[graph]
    src, dst = local // np.maximum(size, 1), local % np.maximum(size, 1)
    if not self_loops:
        keep = src != dst
        graph, src, dst = graph[keep], src[keep], dst[keep]
    return graph, src, dst, node_offsets


def _edges(graph: np.ndarray, src: np.ndarray, dst: np.ndarray, offsets: np.ndarray, n_graphs: int) -> Edges:
    return Edges(
        counts=np.bincount(graph, minlength=n_graphs).astype(np.int64),
        src_local=src,
        dst_local=dst,
        src=offsets[graph] + src,
        dst=offsets[graph] + dst,
    )


class Topology(ABC):
    """Chooses the edges of each graph from its nodes' coordinates."""

    coordinates: tuple[str, ...] = ()

    @abstractmethod
    def edges(self, node_counts: np.ndarray, coords: Coordinates) -> Edges:
        """Edges of every graph of a chunk, given node counts and a coordinate lookup."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The topology as the config block that rebuilds it (stored in graph files)."""


@dataclass(frozen=True)
class FullyConnected(Topology):
    """Every ordered pair of distinct nodes (and each node to itself with ``self_loops``)."""

    self_loops: bool = False

    def edges(self, node_counts: np.ndarray, coords: Coordinates) -> Edges:
        graph, src, dst, offsets = all_pairs(node_counts, self.self_loops)
        return _edges(graph, src, dst, offsets, len(node_counts))

    def describe(self) -> dict[str, Any]:
        return {"type": "fully_connected", "self_loops": self.self_loops}


def _delta_r2(coords: Coordinates, eta: str, phi: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    e, p = coords(eta), coords(phi)
    dphi = wrap_phi(p[a] - p[b])
    deta = e[a] - e[b]
    return deta * deta + dphi * dphi


def _pairs_with_delta_r2(node_counts: np.ndarray, coords: Coordinates, eta: str, phi: str):
    """All distinct node pairs of each graph and their squared Delta-R."""
    graph, src, dst, offsets = all_pairs(node_counts, False)
    return graph, src, dst, offsets, _delta_r2(coords, eta, phi, offsets[graph] + src, offsets[graph] + dst)


_PAIRS_PER_BATCH = 1 << 22


def _batches(graphs: np.ndarray, n: int) -> list[np.ndarray]:
    """Split graphs of ``n`` nodes so each (graphs, n, n) distance array stays a few MiB."""
    per_batch = max(1, _PAIRS_PER_BATCH // (n * n))
    return [graphs[i:i + per_batch] for i in range(0, len(graphs), per_batch)]


def _knn_same_size(graphs: np.ndarray, n: int, offsets: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k nearest neighbours in every graph of ``n`` nodes, from one (graphs, n, n) distance array.

    Ties in distance go to the lower target index (stable sort), as a per-node sort would.
    """
    nodes = offsets[graphs][:, None] + np.arange(n)
    e, p = eta[nodes], phi[nodes]
    dphi = wrap_phi(p[:, :, None] - p[:, None, :])
    d2 = e[:, :, None] - e[:, None, :]
    d2 *= d2
    dphi *= dphi
    d2 += dphi
    d2[:, np.arange(n), np.arange(n)] = np.inf
    kept = min(k, n - 1)
    dst = np.sort(_smallest(d2, kept), axis=-1)
    graph = np.repeat(graphs, n * kept)
    src = np.broadcast_to(np.arange(n)[None, :, None], dst.shape).reshape(-1)
    return graph, src, dst.reshape(-1)


def _smallest(d2: np.ndarray, kept: int) -> np.ndarray:
    """Indices of the ``kept`` smallest values along the last axis, ties to the lower index.

    Float32 distances are made unique by pairing their (order-preserving) bit pattern with the
    index, so a partial partition finds the same set as a full stable sort, much faster.
    """
    n = d2.shape[-1]
    if d2.dtype != np.float32:
        return np.argsort(d2, axis=-1, kind="stable")[..., :kept]
    key = d2.view(np.int32).astype(np.int64) * n + np.arange(n)
    return np.argpartition(key, kept - 1, axis=-1)[..., :kept]


@dataclass(frozen=True)
class _InEtaPhi(Topology):
    """A topology measured in Delta-R of two named node coordinates."""

    eta: str = "eta"
    phi: str = "phi"

    @property
    def coordinates(self) -> tuple[str, ...]:
        return (self.eta, self.phi)


@dataclass(frozen=True)
class KNearest(_InEtaPhi):
    """Each node sends edges to its ``k`` nearest neighbours in Delta-R of (eta, phi)."""

    k: int = 4

    def edges(self, node_counts: np.ndarray, coords: Coordinates) -> Edges:
        node_counts = np.asarray(node_counts, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(node_counts)])[:-1]
        eta, phi = coords(self.eta), coords(self.phi)
        parts = [_knn_same_size(graphs, int(n), offsets, eta, phi, self.k)
                 for n in np.unique(node_counts) if n > 1
                 for graphs in _batches(np.flatnonzero(node_counts == n), int(n))]
        if not parts:
            empty = np.zeros(0, np.int64)
            return _edges(empty, empty, empty, offsets, len(node_counts))
        graph, src, dst = (np.concatenate(x) for x in zip(*parts))
        order = np.argsort(graph, kind="stable")
        return _edges(graph[order], src[order], dst[order], offsets, len(node_counts))

    def describe(self) -> dict[str, Any]:
        return {"type": "knn", "k": self.k, "eta": self.eta, "phi": self.phi}


@dataclass(frozen=True)
class DeltaRCut(_InEtaPhi):
    """Edges between distinct nodes closer than ``max_dr`` in Delta-R of (eta, phi)."""

    max_dr: float = 0.4

    def edges(self, node_counts: np.ndarray, coords: Coordinates) -> Edges:
        graph, src, dst, offsets, d2 = _pairs_with_delta_r2(node_counts, coords, self.eta, self.phi)
        keep = d2 < self.max_dr * self.max_dr
        return _edges(graph[keep], src[keep], dst[keep], offsets, len(node_counts))

    def describe(self) -> dict[str, Any]:
        return {"type": "delta_r", "max_dr": self.max_dr, "eta": self.eta, "phi": self.phi}


def topology_from_config(spec: Mapping[str, Any]) -> Topology:
    """Build a topology from ``{type: fully_connected|knn|delta_r, ...}``."""
    kind = spec.get("type", "fully_connected")
    args = {k: v for k, v in spec.items() if k != "type"}
    kinds = {"fully_connected": FullyConnected, "knn": KNearest, "delta_r": DeltaRCut}
    if kind not in kinds:
        raise ValueError(f"topology type {kind!r}, expected one of {sorted(kinds)}")
    return kinds[kind](**args)
