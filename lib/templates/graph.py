"""GraphTemplate: nodes, edges, features and truth of the graphs built from events.

One graph per row of ``level`` (the event, or a collection such as jets); its nodes are the
rows of ``nodes`` (a collection below ``level``). Each feature is an expression string or a
callable on a :class:`~tracerflow.columns_scope.Scope` (edge features get an
:class:`EdgeScope` whose ``src.x`` / ``dst.x`` are node fields at the edge's two ends).
These are AnalysisG's Add{Node,Edge,Graph}{,Truth}Feature, evaluated per chunk.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Union

import numpy as np

from tracerflow.columns import EVENT, EventBatch
from tracerflow.columns_scope import Scope, ScopeError
from tracerflow.graphs.topology import FullyConnected, Topology, topology_from_config
from tracerflow.templates.event import TemplateError
from tracerflow.templates.expressions import compile_expression

Feature = Union[str, Callable[[Any], np.ndarray]]
KINDS = ("node_features", "edge_features", "graph_features", "node_truth", "edge_truth", "graph_truth")


class EdgeScope:
    """Names at edge level: ``src.<field>`` and ``dst.<field>`` gather node values at both ends."""

    def __init__(self, nodes: Scope, src: np.ndarray, dst: np.ndarray) -> None:
        self.nodes = nodes
        self.ends = {"src": src, "dst": dst}
        self.batch = nodes.batch
        self.level = "edges"

    def __len__(self) -> int:
        return len(self.ends["src"])

    def __getitem__(self, name: str) -> np.ndarray:
        end, _, rest = name.partition(".")
        if end not in self.ends or not rest:
            raise ScopeError(f"edge features read src.<field> or dst.<field>, not {name!r}")
        field = rest if "." in rest else f"{self.nodes.level}.{rest}"
        return self.nodes[field][self.ends[end]]

    def level_of(self, name: str) -> str:
        return self.level

    def chain(self, level: str) -> list[str]:
        return [level]


class GraphTemplate:
    """Declares one graph per ``level`` row with ``nodes`` rows as nodes, and its features."""

    level: ClassVar[str] = EVENT
    nodes: ClassVar[str] = ""
    topology: ClassVar[Topology] = FullyConnected()
    node_features: ClassVar[Mapping[str, Feature]] = {}
    edge_features: ClassVar[Mapping[str, Feature]] = {}
    graph_features: ClassVar[Mapping[str, Feature]] = {}
    node_truth: ClassVar[Mapping[str, Feature]] = {}
    edge_truth: ClassVar[Mapping[str, Feature]] = {}
    graph_truth: ClassVar[Mapping[str, Feature]] = {}

    def __init__(self) -> None:
        if not self.nodes:
            raise TemplateError(f"{type(self).__name__}: no node collection declared (nodes = ...)")
        self.features: dict[str, dict[str, Callable]] = {
            kind: {name: _compiled(fx, f"{kind}.{name}") for name, fx in getattr(self, kind).items()} for kind in KINDS
        }

    def add_feature(self, kind: str, name: str, fx: Feature) -> None:
        """Add a feature of ``kind`` (one of KINDS) to this template instance."""
        if kind not in KINDS:
            raise TemplateError(f"feature kind {kind!r}, expected one of {KINDS}")
        self.features[kind][name] = _compiled(fx, f"{kind}.{name}")

    def AddNodeFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("node_features", name, fx)

    def AddEdgeFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("edge_features", name, fx)

    def AddGraphFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("graph_features", name, fx)

    def AddNodeTruthFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("node_truth", name, fx)

    def AddEdgeTruthFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("edge_truth", name, fx)

    def AddGraphTruthFeature(self, fx: Feature, name: str) -> None:
        self.add_feature("graph_truth", name, fx)

    def names(self, kind: str) -> list[str]:
        return list(self.features[kind])

    def describe(self) -> dict[str, Any]:
        """What the graphs are, stored as an attribute of every graph file."""
        return {"level": self.level, "nodes": self.nodes, "topology": self.topology.describe(),
                **{kind: self.names(kind) for kind in KINDS}}


def _compiled(fx: Feature, where: str) -> Callable:
    if callable(fx):
        return fx
    try:
        return compile_expression(fx)
    except ValueError as err:
        raise TemplateError(f"{where}: {err}") from None


def evaluate(features: Mapping[str, Callable], scope: Any, dtype: np.dtype, where: str) -> np.ndarray:
    """Stack the named features evaluated on ``scope`` into a [rows, n_features] array."""
    out = np.empty((len(scope), len(features)), dtype=dtype)
    for column, (name, fx) in enumerate(features.items()):
        try:
            values = np.asarray(fx(scope))
        except (ScopeError, ValueError) as err:
            raise TemplateError(f"{where}.{name}: {err}") from None
        if values.shape != (len(scope),):
            raise TemplateError(f"{where}.{name}: gave shape {values.shape}, expected ({len(scope)},)")
        out[:, column] = values
    return out


def declared(spec: Mapping[str, Any]) -> GraphTemplate:
    """Build a GraphTemplate from its YAML declaration."""
    attrs: dict[str, Any] = {
        "level": spec.get("level", EVENT),
        "nodes": spec["nodes"],
        "topology": topology_from_config({k: v for k, v in (spec.get("topology") or {}).items() if v is not None}),
    }
    for kind in KINDS:
        attrs[kind] = dict(spec.get(kind) or {})
    return type("DeclaredGraphTemplate", (GraphTemplate,), attrs)()


def check_levels(template: GraphTemplate, batch: EventBatch) -> None:
    """Fail with a clear message unless ``nodes`` lies below ``level`` in this batch."""
    scope = Scope(batch, template.nodes)
    if template.level != template.nodes and not scope.is_ancestor(template.level, template.nodes):
        raise TemplateError(f"graph nodes {template.nodes!r} are not below graph level {template.level!r}")
