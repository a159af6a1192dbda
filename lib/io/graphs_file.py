"""The graphs HDF5 layout: ``/index``, ``/nodes``, ``/edges``, ``/graph``, ``/truth``.

``/index/{hash, sample, file, entry, item, row}`` per graph (``item``: position of the graph's
row within its event, ``row``: its row at the graph level in the events file);
``/nodes/{counts, x}``, ``/edges/{counts, index, x}`` with ``index`` the (source, target)
node positions local to each graph; ``/graph/x``; ``/truth/{nodes, edges, graph}``.
Matrices carry their column names in the ``names`` attribute.
"""
from __future__ import annotations

import json
import os

import numpy as np

from tracerflow.io.h5target import SchemaFile

SCHEMA = "tracerflow.graphs"
SCHEMA_VERSION = 1
INDEX_COLUMNS = ("hash", "sample", "file", "entry", "item", "row")
MATRICES = {
    "node_features": "nodes/x",
    "edge_features": "edges/x",
    "graph_features": "graph/x",
    "node_truth": "truth/nodes",
    "edge_truth": "truth/edges",
    "graph_truth": "truth/graph",
}


class GraphsFile(SchemaFile):
    """Read graphs ``[start, stop)`` of a graphs target as ragged arrays."""

    SCHEMA, SCHEMA_VERSION = SCHEMA, SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        self._offsets: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self._file["index/hash"].shape[0])

    def names(self, matrix: str) -> list[str]:
        """Column names of ``nodes/x``, ``edges/x``, ``graph/x`` or a ``truth/*`` matrix."""
        return json.loads(self._file[matrix].attrs["names"])

    def offsets(self, part: str) -> np.ndarray:
        if part not in self._offsets:
            counts = self._file[f"{part}/counts"][:]
            self._offsets[part] = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        return self._offsets[part]

    def read(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Arrays of graphs ``[start, stop)``: index columns, counts, features and truth."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        out = {f"index/{c}": self._file[f"index/{c}"][start:stop] for c in INDEX_COLUMNS}
        n0, n1 = (int(x) for x in self.offsets("nodes")[[start, stop]])
        e0, e1 = (int(x) for x in self.offsets("edges")[[start, stop]])
        out["nodes/counts"] = self._file["nodes/counts"][start:stop]
        out["edges/counts"] = self._file["edges/counts"][start:stop]
        out["edges/index"] = self._file["edges/index"][e0:e1]
        rows = {"nodes": (n0, n1), "edges": (e0, e1), "graph": (start, stop)}
        for path in MATRICES.values():
            part = path.split("/")[-1] if path.startswith("truth") else path.split("/")[0]
            lo, hi = rows[part]
            out[path] = self._file[path][lo:hi]
        return out
