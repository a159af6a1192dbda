"""Rows of the three cache kinds: read in windows, held in memory, and written back as cache files.

Each kind (events, graphs, selections) knows how to open its file, read a row range, gather
rows (keeping every ragged part aligned) and concatenate pieces; :class:`Held` keeps the rows
of one cache file that RestoreX loaded, sorted by their row in that file, and FlushX drops
them again. DumpX writes held rows in the same layout as the stage that made the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from tracerflow.columns import EventBatch, Table, _parents_first
from tracerflow.hashing import hash_hex
from tracerflow.io import events_file, graphs_file, selections_file
from tracerflow.io.events_file import EventsFile
from tracerflow.io.graphs_file import GraphsFile
from tracerflow.io.h5target import H5Writer, check_schema

GRAPH_LEVEL = ("index/hash", "index/sample", "index/file", "index/entry", "index/item", "index/row",
               "nodes/counts", "edges/counts", "graph/x", "truth/graph")
NODE_LEVEL = ("nodes/x", "truth/nodes")
EDGE_LEVEL = ("edges/index", "edges/x", "truth/edges")
INDEX_DTYPES = {"hash": np.uint64, "sample": np.uint16, "file": np.uint16, "entry": np.int64,
                "item": np.int32, "row": np.int64}


def expand(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """All rows of the ranges ``[start, start + count)``, concatenated in order."""
    start = np.asarray(start, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return np.arange(int(count.sum()), dtype=np.int64) + np.repeat(start - before, count)


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Offsets (length n + 1) of ragged content with ``counts`` per row."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class SelectionsReader:
    """Read passing rows ``[lo, hi)`` of a selections file: index columns and derived outputs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = h5py.File(self.path, "r")
        check_schema(self._file, selections_file.SCHEMA, selections_file.SCHEMA_VERSION)
        self.outputs = list(self._file["derived"]) if "derived" in self._file else []

    @property
    def attrs(self) -> h5py.AttributeManager:
        """Root attributes of the selections file (level, template, ...)."""
        return self._file.attrs

    def read(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Arrays of rows ``[lo, hi)`` keyed by their path in the file."""
        out = {f"index/{c}": self._file[f"index/{c}"][lo:hi] for c in selections_file.INDEX_COLUMNS}
        out.update({f"derived/{name}": self._file[f"derived/{name}"][lo:hi] for name in self.outputs})
        return out

    def cutflow(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Names, raw and weighted counts of the file's cutflow."""
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in self._file["cutflow/name"][:]]
        return names, self._file["cutflow/passed"][:], self._file["cutflow/weighted"][:]

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()


@dataclass(frozen=True)
class CacheKind:
    """How to open a file of one cache kind (its reader has ``read(lo, hi)``), gather and concatenate rows."""

    name: str
    open: Callable[[str], Any]
    gather: Callable[[Any, np.ndarray], Any]
    concat: Callable[[list], Any]
    hashes: Callable[[Any], np.ndarray]
    set_codes: Callable[[Any, np.ndarray, np.ndarray], None]


def gather_events(batch: EventBatch, rows: np.ndarray) -> EventBatch:
    """Events ``rows`` of ``batch`` in that order, with their collections."""
    rows = np.asarray(rows, dtype=np.int64)
    picked: dict[str, np.ndarray] = {"event": rows}
    tables: dict[str, Table] = {}
    for name in _parents_first(batch.tables):
        table = batch.tables[name]
        parent_rows = picked[table.parent]
        content = expand(table.offsets[parent_rows], table.counts[parent_rows])
        tables[name] = Table(counts=table.counts[parent_rows], fields={k: v[content] for k, v in table.fields.items()},
                             parent=table.parent)
        picked[name] = content
    return EventBatch(index={k: v[rows] for k, v in batch.index.items()},
                      event={k: v[rows] for k, v in batch.event.items()}, tables=tables)


def concat_events(parts: list[EventBatch]) -> EventBatch:
    """Events of ``parts`` one after the other (same layout)."""
    first = parts[0]
    return EventBatch(
        index={k: np.concatenate([p.index[k] for p in parts]) for k in first.index},
        event={k: np.concatenate([p.event[k] for p in parts]) for k in first.event},
        tables={name: Table(counts=np.concatenate([p.tables[name].counts for p in parts]),
                            fields={f: np.concatenate([p.tables[name].fields[f] for p in parts]) for f in t.fields},
                            parent=t.parent)
                for name, t in first.tables.items()},
    )


def _set_event_codes(batch: EventBatch, sample: np.ndarray, file: np.ndarray) -> None:
    batch.index["sample"], batch.index["file"] = sample, file


def gather_graphs(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Graphs ``rows`` of ``data`` in that order, with their nodes and edges."""
    rows = np.asarray(rows, dtype=np.int64)
    nodes = expand(offsets_of(data["nodes/counts"])[rows], data["nodes/counts"][rows])
    edges = expand(offsets_of(data["edges/counts"])[rows], data["edges/counts"][rows])
    out = {key: data[key][rows] for key in GRAPH_LEVEL}
    out.update({key: data[key][nodes] for key in NODE_LEVEL})
    out.update({key: data[key][edges] for key in EDGE_LEVEL})
    return out


def concat_arrays(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise concatenation of dicts of arrays with the same keys."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def gather_rows(data: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``rows`` of every array of ``data`` (all aligned to the same rows)."""
    return {key: values[rows] for key, values in data.items()}


def _set_index_codes(data: dict[str, np.ndarray], sample: np.ndarray, file: np.ndarray) -> None:
    data["index/sample"], data["index/file"] = sample, file


KINDS: dict[str, CacheKind] = {
    "events": CacheKind("events", EventsFile, gather_events, concat_events, lambda b: b.index["hash"], _set_event_codes),
    "graphs": CacheKind("graphs", GraphsFile, gather_graphs, concat_arrays, lambda d: d["index/hash"], _set_index_codes),
    "selections": CacheKind("selections", SelectionsReader, gather_rows, concat_arrays, lambda d: d["index/hash"],
                            _set_index_codes),
}


def read_rows(kind: CacheKind, reader: Any, rows: np.ndarray, window: int) -> Any:
    """Sorted, unique ``rows`` of one file, read in ranges of at most ``window`` rows."""
    parts = []
    i = 0
    while i < len(rows):
        lo = int(rows[i])
        j = int(np.searchsorted(rows, lo + window, side="left"))
        hi = int(rows[j - 1]) + 1
        data = reader.read(lo, hi)
        if hi - lo != j - i:
            data = kind.gather(data, rows[i:j] - lo)
        parts.append(data)
        i = j
    return parts[0] if len(parts) == 1 else kind.concat(parts)


@dataclass
class Held:
    """Rows of one cache file held in memory, sorted by ``rows`` (their row in the file)."""

    rows: np.ndarray
    data: Any
    memo: dict[str, Any] = field(default_factory=dict)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Position of each file row in ``data``, -1 where not held."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.rows):
            return np.full(len(rows), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        return np.where(self.rows[at] == rows, at, -1)

    def offsets(self, part: str) -> np.ndarray:
        """Offsets of ragged ``part`` (``nodes`` or ``edges``) of held graphs, computed once."""
        if part not in self.memo:
            self.memo[part] = offsets_of(self.data[f"{part}/counts"])
        return self.memo[part]


def hold(kind: CacheKind, held: Held | None, rows: np.ndarray, data: Any) -> Held:
    """``held`` with the new ``rows`` (not held yet) and their ``data`` added, kept sorted by row."""
    if held is None:
        return Held(rows=rows, data=data)
    all_rows = np.concatenate([held.rows, rows])
    order = np.argsort(all_rows, kind="stable")
    return Held(rows=all_rows[order], data=kind.gather(kind.concat([held.data, data]), order))


def drop(kind: CacheKind, held: Held, rows: np.ndarray) -> Held | None:
    """``held`` without ``rows``; None once nothing is left."""
    keep = np.flatnonzero(~np.isin(held.rows, rows))
    if not len(keep):
        return None
    if len(keep) == len(held.rows):
        return held
    return Held(rows=held.rows[keep], data=kind.gather(held.data, keep))


def graph_dicts(data: dict[str, np.ndarray], names: dict[str, list[str]], lo: int, hi: int,
                node_offsets: np.ndarray | None = None, edge_offsets: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Graphs ``[lo, hi)`` of ``data`` as dicts (x, edge_index [2, E], edge_attr, graph_attr, truth)."""
    nodes = offsets_of(data["nodes/counts"]) if node_offsets is None else node_offsets
    edges = offsets_of(data["edges/counts"]) if edge_offsets is None else edge_offsets
    out = []
    for g in range(lo, hi):
        n0, n1, e0, e1 = int(nodes[g]), int(nodes[g + 1]), int(edges[g]), int(edges[g + 1])
        out.append({
            "hash": hash_hex(data["index/hash"][g]),
            "item": int(data["index/item"][g]),
            "x": data["nodes/x"][n0:n1].copy(),
            "x_names": names["nodes/x"],
            "edge_index": data["edges/index"][e0:e1].T.astype(np.int64),
            "edge_attr": data["edges/x"][e0:e1].copy(),
            "edge_attr_names": names["edges/x"],
            "graph_attr": data["graph/x"][g].copy(),
            "graph_attr_names": names["graph/x"],
            "truth": {"nodes": data["truth/nodes"][n0:n1].copy(), "edges": data["truth/edges"][e0:e1].copy(),
                      "graph": data["truth/graph"][g].copy()},
            "truth_names": {"nodes": names["truth/nodes"], "edges": names["truth/edges"],
                            "graph": names["truth/graph"]},
        })
    return out


def graph_names(reader: GraphsFile) -> dict[str, list[str]]:
    """Column names of every matrix of a graphs file."""
    return {path: reader.names(path) for path in graphs_file.MATRICES.values()}


def selection_dict(data: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, Any]:
    """One event's selection: ``passed``, the ``item`` of each passing row and its derived outputs."""
    out: dict[str, Any] = {"passed": hi > lo, "item": data["index/item"][lo:hi].copy()}
    for key, values in data.items():
        if key.startswith("derived/"):
            out[key.split("/", 1)[1]] = values[lo:hi].copy()
    return out


def digest(hashes: np.ndarray) -> str:
    """Digest of a set of event hashes, the config digest of a dumped cache."""
    ordered = np.unique(np.asarray(hashes, dtype=np.uint64))
    return hashlib.blake2b(ordered.tobytes(), digest_size=16).hexdigest()


def write_events(path: Path, parts: list[tuple[str, EventBatch]], samples: list[str], files: list[str]) -> None:
    """Write held events of several files into one events file (all must share one layout)."""
    _same_layout([(source, _event_layout(batch)) for source, batch in parts], "events")
    batches = [batch for _, batch in parts]
    hashes = np.concatenate([b.index["hash"] for b in batches]) if batches else np.zeros(0, np.uint64)
    with H5Writer(path, events_file.SCHEMA, events_file.SCHEMA_VERSION, digest(hashes), "SampleTracer.DumpEvents",
                  attrs={"sources": [source for source, _ in parts]}) as writer:
        for batch in batches:
            events_file.append_batch(writer, batch)
        example = batches[0] if batches else EventBatch(index={k: np.zeros(0, INDEX_DTYPES[k]) for k in events_file.INDEX_COLUMNS})
        events_file.finish(writer, example, samples, files)


def write_graphs(path: Path, parts: list[tuple[str, dict[str, np.ndarray], dict[str, list[str]], dict[str, Any]]],
                 samples: list[str], files: list[str]) -> None:
    """Write held graphs of several files into one graphs file (same feature names required)."""
    _same_layout([(source, (names, {k: str(v.dtype) for k, v in data.items()})) for source, data, names, _ in parts], "graphs")
    hashes = np.concatenate([d["index/hash"] for _, d, _, _ in parts]) if parts else np.zeros(0, np.uint64)
    names = parts[0][2] if parts else {p: [] for p in graphs_file.MATRICES.values()}
    attrs = {k: parts[0][3][k] for k in ("template", "precision") if parts and k in parts[0][3]}
    with H5Writer(path, graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION, digest(hashes), "SampleTracer.DumpGraphs",
                  attrs={**attrs, "sources": [source for source, *_ in parts]}) as writer:
        for _, data, _, _ in parts:
            for key, values in data.items():
                writer.append(key, values)
        for column, dtype in INDEX_DTYPES.items():
            writer.ensure(f"index/{column}", dtype)
        writer.ensure("nodes/counts", np.uint32)
        writer.ensure("edges/counts", np.uint32)
        writer.ensure("edges/index", np.uint16, (2,))
        for matrix, matrix_names in names.items():
            writer.ensure(matrix, np.float32, (len(matrix_names),))
            writer.set_attrs(matrix, names=matrix_names)
        writer.set_attrs("index/sample", labels=samples)
        writer.set_attrs("index/file", labels=files)
        writer.set_attrs("/", n_graphs=int(len(hashes)))


def write_selections(path: Path, parts: list[tuple[str, dict[str, np.ndarray], SelectionsReader]],
                     samples: list[str], files: list[str], covers: list[tuple[str, str]]) -> None:
    """Write held selection rows of several files into one selections file.

    The cutflow written is the sum of the source files' cutflows; ``covers`` lists the
    (sample, file) pairs the sources were evaluated on.
    """
    _same_layout([(source, ({k: str(v.dtype) for k, v in data.items()}, reader.attrs.get("level"), reader.cutflow()[0]))
                  for source, data, reader in parts], "selections")
    hashes = np.concatenate([d["index/hash"] for _, d, _ in parts]) if parts else np.zeros(0, np.uint64)
    cut_names, passed, weighted = ["all"], np.zeros(1, np.int64), np.zeros(1, np.float64)
    if parts:
        cut_names = parts[0][2].cutflow()[0]
        passed = sum(reader.cutflow()[1] for _, _, reader in parts)
        weighted = sum(reader.cutflow()[2] for _, _, reader in parts)
    level = str(parts[0][2].attrs.get("level", "event")) if parts else "event"
    with H5Writer(path, selections_file.SCHEMA, selections_file.SCHEMA_VERSION, digest(hashes),
                  "SampleTracer.DumpSelections", attrs={"sources": [s for s, _, _ in parts], "covers": covers}) as writer:
        for _, data, _ in parts:
            for key, values in data.items():
                writer.append(key, values)
        for column, dtype in INDEX_DTYPES.items():
            writer.ensure(f"index/{column}", dtype)
        writer.group("derived")
        writer.write("cutflow/name", np.array(cut_names, dtype=object).astype("S"))
        writer.write("cutflow/passed", passed)
        writer.write("cutflow/weighted", weighted)
        writer.set_attrs("index/sample", labels=samples)
        writer.set_attrs("index/file", labels=files)
        writer.set_attrs("/", n_passed=int(len(hashes)), level=level)


def _event_layout(batch: EventBatch) -> tuple:
    event = sorted((k, str(v.dtype)) for k, v in batch.event.items())
    tables = sorted((name, t.parent, tuple(sorted((k, str(v.dtype)) for k, v in t.fields.items())))
                    for name, t in batch.tables.items())
    return event, tables


def _same_layout(layouts: list[tuple[str, Any]], kind: str) -> None:
    """Raise ValueError naming two source files whose held rows cannot share one cache file."""
    for source, layout in layouts[1:]:
        if layout != layouts[0][1]:
            raise ValueError(
                f"cannot dump {kind} of {layouts[0][0]} and {source} into one file: their layouts differ "
                f"({json.dumps(layouts[0][1], default=str)} vs {json.dumps(layout, default=str)})"
            )
