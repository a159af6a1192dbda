"""BuildGraphs: events file -> graphs file, one chunk of events at a time."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tracerflow.columns import EVENT, EventBatch
from tracerflow.columns_scope import Scope
from tracerflow.io.events_file import EventsFile
from tracerflow.io.graphs_file import INDEX_COLUMNS, MATRICES, SCHEMA, SCHEMA_VERSION
from tracerflow.io.h5target import H5Writer
from tracerflow.templates.graph import EdgeScope, GraphTemplate, check_levels, evaluate

PRECISIONS = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class GraphStats:
    """What one BuildGraphs call produced."""

    graphs: int
    nodes: int
    edges: int


def graphs_of_batch(template: GraphTemplate, batch: EventBatch, dtype: np.dtype) -> dict[str, np.ndarray]:
    """All arrays of the graphs of one chunk of events, keyed by their path in the graphs file."""
    check_levels(template, batch)
    graph_scope = Scope(batch, template.level)
    node_scope = Scope(batch, template.nodes)
    n_graphs = len(graph_scope)
    node_graph = node_scope.row_map(template.nodes, template.level)
    node_counts = np.bincount(node_graph, minlength=n_graphs)
    edges = template.topology.edges(node_counts, lambda name: node_scope[f"{template.nodes}.{name}"])
    edge_scope = EdgeScope(node_scope, edges.src, edges.dst)
    event_of_graph = graph_scope.row_map(template.level, EVENT) if template.level != EVENT else np.arange(n_graphs)
    if template.level == EVENT:
        item = np.zeros(n_graphs, dtype=np.int32)
    else:
        item = batch.tables[template.level].local_index().astype(np.int32)
    out = {f"index/{c}": batch.index[c][event_of_graph] for c in ("hash", "sample", "file", "entry")}
    out["index/item"] = item
    out["nodes/counts"] = node_counts.astype(np.uint32)
    out["edges/counts"] = edges.counts.astype(np.uint32)
    out["edges/index"] = np.stack([edges.src_local, edges.dst_local], axis=1).astype(np.uint16)
    scopes = {"node": node_scope, "edge": edge_scope, "graph": graph_scope}
    for kind, path in MATRICES.items():
        prefix = kind.split("_")[0]
        truth = kind.endswith("truth")
        out[path] = evaluate(template.features[kind], scopes[prefix], np.float32 if truth else dtype, kind)
    return out


def build_graphs(
    events_path: str | os.PathLike,
    out_path: str | os.PathLike,
    template: GraphTemplate,
    *,
    config_digest: str,
    created_by: str,
    precision: str = "float32",
    compression: str | None = None,
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> GraphStats:
    """Build the graphs of every event of ``events_path`` and write them atomically to ``out_path``."""
    dtype = PRECISIONS[precision]
    graphs = nodes = edges = 0
    row_offset = 0
    with EventsFile(events_path) as events, H5Writer(
        out_path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, compression,
        attrs={"template": template.describe(), "events_file": os.path.basename(events_path), "precision": precision},
    ) as writer:
        total = len(events)
        for start in range(0, total, chunk_size):
            batch = events.read(start, start + chunk_size)
            arrays = graphs_of_batch(template, batch, dtype)
            n = len(arrays["index/hash"])
            arrays["index/row"] = np.arange(row_offset, row_offset + n, dtype=np.int64)
            row_offset += n
            for path, values in arrays.items():
                writer.append(path, values)
            graphs += n
            nodes += len(arrays["nodes/x"])
            edges += len(arrays["edges/index"])
            if progress:
                progress(min(start + chunk_size, total), total)
        _finish(writer, template, dtype, events)
    return GraphStats(graphs, nodes, edges)


def _finish(writer: H5Writer, template: GraphTemplate, dtype: np.dtype, events: EventsFile) -> None:
    """Create empty datasets for an empty input and record names and labels."""
    index_dtypes = {"hash": np.uint64, "sample": np.uint16, "file": np.uint16, "entry": np.int64, "item": np.int32, "row": np.int64}
    for column in INDEX_COLUMNS:
        writer.ensure(f"index/{column}", index_dtypes[column])
    writer.ensure("nodes/counts", np.uint32)
    writer.ensure("edges/counts", np.uint32)
    writer.ensure("edges/index", np.uint16, (2,))
    for kind, path in MATRICES.items():
        names = template.names(kind)
        writer.ensure(path, np.float32 if kind.endswith("truth") else dtype, (len(names),))
        writer.set_attrs(path, names=names)
    writer.set_attrs("index/sample", labels=events.labels("sample"))
    writer.set_attrs("index/file", labels=events.labels("file"))
    writer.set_attrs("/", n_graphs=int(writer.file["index/hash"].shape[0]))
