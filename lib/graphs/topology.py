"""Graph topologies built for a whole chunk of graphs at once.

Every topology starts from all ordered node pairs of each graph (vectorised over graphs of
different sizes) and keeps a subset: all of them, the k nearest per source node, or those
within a Delta-R cut. Edges come out sorted by graph, then source, then target.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

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
    dphi = (p[a] - p[b] + np.pi) % (2 * np.pi) - np.pi
    deta = e[a] - e[b]
    return deta * deta + dphi * dphi


def _pairs_with_delta_r2(node_counts: np.ndarray, coords: Coordinates, eta: str, phi: str):
    """All distinct node pairs of each graph and their squared Delta-R."""
    graph, src, dst, offsets = all_pairs(node_counts, False)
    return graph, src, dst, offsets, _delta_r2(coords, eta, phi, offsets[graph] + src, offsets[graph] + dst)


@dataclass(frozen=True)
class KNearest(Topology):
    """Each node sends edges to its ``k`` nearest neighbours in Delta-R of (eta, phi)."""

    k: int = 4
    eta: str = "eta"
    phi: str = "phi"

    @property
    def coordinates(self) -> tuple[str, ...]:
        return (self.eta, self.phi)

    def edges(self, node_counts: np.ndarray, coords: Coordinates) -> Edges:
        graph, src, dst, offsets, d2 = _pairs_with_delta_r2(node_counts, coords, self.eta, self.phi)
        source = offsets[graph] + src
        order = np.lexsort((dst, d2, source))
        source_sorted = source[order]
        first = np.searchsorted(source_sorted, source_sorted, side="left")
        rank = np.arange(len(order)) - first
        keep = np.sort(order[rank < self.k])
        return _edges(graph[keep], src[keep], dst[keep], offsets, len(node_counts))

    def describe(self) -> dict[str, Any]:
        return {"type": "knn", "k": self.k, "eta": self.eta, "phi": self.phi}


@dataclass(frozen=True)
class DeltaRCut(Topology):
    """Edges between distinct nodes closer than ``max_dr`` in Delta-R of (eta, phi)."""

    max_dr: float = 0.4
    eta: str = "eta"
    phi: str = "phi"

    @property
    def coordinates(self) -> tuple[str, ...]:
        return (self.eta, self.phi)

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
