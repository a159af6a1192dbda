"""Write a resampled split from its kept jets on disk, in the shuffle's order, a bucket at a time.

The Resample task hands one split's kept jets to a :class:`KeptJetsFile` (one record per jet with
at least one copy, in the order of the selections files) and writes the split with
:func:`write_kept`, so that no array of the whole split is ever in memory:

1. The kept jets are read a block at a time, in the order they were kept (each selections and
   graphs file front to back); each jet's selection outputs, tree entry and graph nodes are read,
   the jet becomes its copies, and every copy goes with its nodes to the scratch files of its
   bucket of the :class:`~tracerflow.resample.stream.Shuffle`.
2. The buckets are read back one at a time, their rows put in (source, row, copy) order and
   permuted as the shuffle says, weighted by their class's balance factor, and written to the
   target at their final positions.

Memory is bounded by one block and one bucket (~``BUCKET_ROWS`` rows with their nodes); the
scratch files, about the size of the target, live in a temporary directory beside it. The file
is the same as :func:`~tracerflow.resample.gather.write_resampled` writes from the rows of
:func:`~tracerflow.resample.stream.resample`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.columns import ragged_index
from tracerflow.io.atomic import temporary_path
from tracerflow.io.faults import output_error
from tracerflow.io.h5target import H5Writer
from tracerflow.io.resampled_file import (COUNT_DTYPE, INDEX_DTYPES, LABEL_DTYPE, SCHEMA, SCHEMA_VERSION,
                                          WEIGHT_DTYPE)
from tracerflow.resample.gather import SourcePaths, _difference, _open_graphs, names_of
from tracerflow.resample.stream import KEPT_COLUMNS, KEPT_DTYPES, SUM_BLOCK, SplitSummary, expand_copies
from tracerflow.write.placed import PlacedDatasets

#: Kept jets read, gathered and spread over the buckets at a time.
GATHER_BLOCK = 1 << 15
#: One kept jet as :class:`KeptJetsFile` stores it.
KEPT_RECORD = np.dtype([(c, KEPT_DTYPES[c]) for c in KEPT_COLUMNS])
#: Source files kept open at once while gathering (kept jets come file after file).
OPEN_SOURCES = 2


class KeptJetsFile:
    """A split's kept jets (:data:`~tracerflow.resample.stream.KEPT_COLUMNS`) appended to a file at
    ``path``, read back in blocks; the sink :func:`~tracerflow.resample.stream.resample_split` fills."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle = open(self.path, "wb")
        self.n_jets = 0

    def __enter__(self) -> "KeptJetsFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        n = len(columns["row"])
        records = np.empty(n, KEPT_RECORD)
        for c in KEPT_COLUMNS:
            records[c] = columns[c]
        self._handle.write(records.tobytes())
        self.n_jets += n

    def blocks(self, size: int = SUM_BLOCK) -> Iterator[dict[str, np.ndarray]]:
        """The kept jets in the order they were added, ``size`` at a time, as columns."""
        if not self._handle.closed:
            self._handle.flush()
        for start in range(0, self.n_jets, size):
            records = np.fromfile(self.path, KEPT_RECORD, count=min(size, self.n_jets - start),
                                  offset=start * KEPT_RECORD.itemsize)
            yield {c: records[c] for c in KEPT_COLUMNS}


@contextlib.contextmanager
def scratch_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A directory for the scratch files of writing ``path``, beside it and named as its temporary
    files are (``.<name>.tmp-<pid>-<thread>``), removed when the block ends; a fault of the file
    system met there (a full disk) is raised as one writing ``path``."""
    directory = temporary_path(path, thread=True)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
    except OSError as err:
        raise output_error(err, path) or err
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _source_names(p: SourcePaths) -> dict[str, Any]:
    """Selection outputs with their dtypes, and node feature and truth names and dtypes, of one source."""
    with h5py.File(p.selections, "r") as sel, _open_graphs(p.graphs) as graphs:
        return names_of(sel, graphs)


def _common_names(paths: Sequence[SourcePaths]) -> dict[str, Any]:
    """The names every source shares; a ValueError names the first source that differs."""
    if not paths:
        raise ValueError("a resampled split needs at least one source file")
    first = _source_names(paths[0])
    for p in paths[1:]:
        mine = _source_names(p)
        if mine != first:
            raise ValueError(f"{p.selections}: {_difference(mine, first)}")
    return first


class _Source:
    """One source's selections and graphs files, open, with its map from selection rows to graph rows."""

    def __init__(self, paths: SourcePaths) -> None:
        self.paths = paths
        self._files = contextlib.ExitStack()
        self.sel = self._files.enter_context(h5py.File(paths.selections, "r"))
        self.graphs = self._files.enter_context(_open_graphs(paths.graphs))
        self.graph_of_row = self.sel["index/row"][:].astype(np.int64)
        needed = int(self.graph_of_row.max(initial=-1)) + 1
        counts = (self.graphs["nodes/counts"][:].astype(np.int64) if self.graphs is not None
                  else np.zeros(needed, np.int64))
        if len(counts) < needed:
            self.close()
            raise RuntimeError(f"{paths.graphs}: graphs do not line up with {paths.selections}")
        self.node_start = np.concatenate([[0], np.cumsum(counts)])

    def close(self) -> None:
        self._files.close()

    def read(self, rows: np.ndarray, hashes: np.ndarray, jet_names: Sequence[str],
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Selection outputs, tree entries, node counts, node features and node truth (back to back)
        of the jets at selection ``rows``; their graphs must carry ``hashes``."""
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        local = rows - r0
        jets = {v: self.sel[f"derived/{v}"][r0:r1][local] for v in jet_names}
        entry = self.sel["index/entry"][r0:r1][local]
        graph = self.graph_of_row[rows]
        counts = self.node_start[graph + 1] - self.node_start[graph]
        if self.graphs is None:
            return jets, entry, counts, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        g0, g1 = int(graph.min()), int(graph.max()) + 1
        if not np.array_equal(self.graphs["index/hash"][g0:g1][graph - g0], hashes):
            raise RuntimeError(f"{self.paths.graphs}: graphs do not line up with {self.paths.selections}")
        n0, n1 = int(self.node_start[g0]), int(self.node_start[g1])
        src = ragged_index(self.node_start[graph] - n0, counts)
        return jets, entry, counts, self.graphs["nodes/x"][n0:n1][src], self.graphs["truth/nodes"][n0:n1][src]


class _Sources:
    """The last few sources read, open (kept jets come source after source)."""

    def __init__(self, paths: Sequence[SourcePaths]) -> None:
        self.paths = paths
        self._open: dict[int, _Source] = {}

    def __getitem__(self, index: int) -> _Source:
        if index not in self._open:
            if len(self._open) >= OPEN_SOURCES:
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
            self._open[index] = _Source(self.paths[index])
        return self._open[index]

    def close(self) -> None:
        for source in self._open.values():
            source.close()
        self._open = {}


def _row_record(jet_dtypes: Mapping[str, np.dtype]) -> np.dtype:
    """One output row in a bucket's scratch file: index columns, label, weight, node count, selection outputs."""
    fields = [("source", INDEX_DTYPES["source"]), ("row", INDEX_DTYPES["row"]), ("hash", INDEX_DTYPES["hash"]),
              ("item", INDEX_DTYPES["item"]), ("copy", INDEX_DTYPES["copy"]), ("entry", np.int64),
              ("label", LABEL_DTYPE), ("weight", WEIGHT_DTYPE), ("count", COUNT_DTYPE)]
    return np.dtype(fields + [(f"jets/{v}", dtype) for v, dtype in jet_dtypes.items()])


def _append(path: Path, data: np.ndarray) -> None:
    if data.nbytes:
        with open(path, "ab") as handle:
            handle.write(np.ascontiguousarray(data).tobytes())


def _load(path: Path, dtype: np.dtype, width: int | None = None) -> np.ndarray:
    """A bucket's scratch file (rows of ``dtype``; ``width`` columns for a node file, at least one);
    empty when the bucket got nothing."""
    values = np.fromfile(path, dtype) if path.exists() else np.zeros(0, dtype)
    return values if width is None else values.reshape(-1, width)


def write_kept(path: str | os.PathLike, kept: KeptJetsFile, summary: SplitSummary, *, classes: Sequence[str],
               sources: Sequence[tuple[str, str]], paths: Sequence[SourcePaths], config_digest: str,
               created_by: str, attrs: Mapping[str, Any] | None = None, scratch: Path | None = None) -> int:
    """Write split ``summary.split`` from its kept jets as a resampled file at ``path`` (see the module
    docstring); return its node count. ``paths[i]`` are the files of ``sources[i]``; sources that
    disagree on their outputs or node names, or graphs that do not line up with their selections,
    raise naming the file. Scratch files go to ``scratch`` (a directory beside ``path`` by default)."""
    if len(paths) != len(sources):
        raise ValueError(f"{path}: {len(sources)} sources, {len(paths)} paths given")
    names = _common_names(paths)
    path = Path(path)
    with contextlib.ExitStack() as stack:
        directory = scratch if scratch is not None else stack.enter_context(scratch_directory(path))
        rows, nodes = _spread(kept, summary, paths, names, directory)
        if rows != summary.n_rows:
            raise RuntimeError(f"{path}: {rows} rows gathered, the resampling kept {summary.n_rows}")
        return _write_buckets(path, summary, names, directory, nodes, split=summary.split, classes=classes,
                              sources=sources, config_digest=config_digest, created_by=created_by, attrs=attrs)


def _spread(kept: KeptJetsFile, summary: SplitSummary, paths: Sequence[SourcePaths], names: Mapping[str, Any],
            directory: Path) -> tuple[int, int]:
    """Phase 1: every kept jet's copies, with their outputs and nodes, to their buckets' scratch files;
    return the rows and nodes written."""
    shuffle = summary.shuffle
    record = _row_record(names["jets"])
    width_x, width_t = len(names["x"]), len(names["truth"])
    readers = _Sources(paths)
    n_rows = n_nodes = 0
    try:
        for block in kept.blocks(GATHER_BLOCK):
            n = len(block["row"])
            jets = {v: np.empty(n, dtype) for v, dtype in names["jets"].items()}
            entry, counts = np.empty(n, np.int64), np.empty(n, np.int64)
            x_parts, t_parts, order = [], [], []
            for source in np.unique(block["source"]):
                at = np.flatnonzero(block["source"] == source)
                got, got_entry, got_counts, x, t = readers[int(source)].read(block["row"][at], block["hash"][at],
                                                                             list(jets))
                for v, values in got.items():
                    jets[v][at] = values
                entry[at], counts[at] = got_entry, got_counts
                x_parts.append(x)
                t_parts.append(t)
                order.append(at)
            # nodes of the block's jets, back to back in the order the sources were read
            read_order = np.concatenate(order)
            node_start = np.empty(n, np.int64)
            node_start[read_order] = np.cumsum(counts[read_order]) - counts[read_order]
            x_all = np.concatenate(x_parts) if names["graphs"] else None
            t_all = np.concatenate(t_parts) if names["graphs"] else None
            parent, copy = expand_copies(block["copies"])
            out = np.empty(len(parent), record)
            for c in ("source", "row", "hash", "item", "label", "weight"):
                out[c] = block[c][parent]
            out["copy"], out["entry"], out["count"] = copy, entry[parent], counts[parent]
            for v, values in jets.items():
                out[f"jets/{v}"] = values[parent]
            bucket = shuffle.buckets(out["hash"], out["item"], copy)
            by_bucket = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[by_bucket], np.arange(shuffle.n_buckets + 1))
            for b, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
                if lo == hi:
                    continue
                sel = by_bucket[lo:hi]
                _append(directory / f"rows.{b}", out[sel])
                if names["graphs"]:
                    idx = ragged_index(node_start[parent[sel]], counts[parent[sel]])
                    if width_x:
                        _append(directory / f"x.{b}", x_all[idx])
                    if width_t:
                        _append(directory / f"truth.{b}", t_all[idx])
            n_rows += len(out)
            n_nodes += int(counts[parent].sum())
    finally:
        readers.close()
    return n_rows, n_nodes


def _write_buckets(path: Path, summary: SplitSummary, names: Mapping[str, Any], directory: Path, n_nodes: int, *,
                   split: str, classes: Sequence[str], sources: Sequence[tuple[str, str]], config_digest: str,
                   created_by: str, attrs: Mapping[str, Any] | None) -> int:
    """Phase 2: each bucket in turn, in the shuffle's order, to its place in the target; return the nodes."""
    shuffle, n = summary.shuffle, summary.n_rows
    record = _row_record(names["jets"])
    graphs = bool(names["graphs"])
    x_dtype, t_dtype = np.dtype(names["x_dtype"]), np.dtype(names["truth_dtype"])
    width_x, width_t = len(names["x"]), len(names["truth"])
    half = np.zeros((width_x, 1 << 16), np.int64) if graphs and x_dtype == np.float16 else None
    if half is not None:
        from tracerflow.write.kernels import count_half_patterns  # numba: only when writing
    columns = {f"index/{c}": INDEX_DTYPES[c] for c in ("source", "row", "hash", "item", "copy")}
    columns.update({"label": LABEL_DTYPE, "weight": WEIGHT_DTYPE, "index/entry": np.int64})
    columns.update({f"jets/{v}": dtype for v, dtype in names["jets"].items()})
    if graphs:
        columns["nodes/counts"] = COUNT_DTYPE
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, None,
                  attrs={"split": split, "classes": list(classes), "sources": [list(s) for s in sources],
                         "n_rows": n, **dict(attrs or {})}) as writer:
        rows_out = PlacedDatasets(writer, n)
        for name, dtype in columns.items():
            rows_out.create(name, dtype)
        nodes_out = PlacedDatasets(writer, n_nodes) if graphs else None
        if nodes_out is not None:
            nodes_out.create("nodes/x", x_dtype, (width_x,), names=names["x"])
            nodes_out.create("nodes/truth", t_dtype, (width_t,), names=names["truth"])
        with rows_out, (nodes_out if nodes_out is not None else contextlib.nullcontext()):
            r0 = n0 = 0
            for b in range(shuffle.n_buckets):
                rows = _load(directory / f"rows.{b}", record)
                natural = np.lexsort((rows["copy"], rows["row"], rows["source"]))
                order = natural[shuffle.permutation(b, len(rows))]
                start = np.cumsum(rows["count"], dtype=np.int64) - rows["count"]
                rows = rows[order]
                weight = (rows["weight"].astype(np.float64) * summary.balance[rows["label"]]).astype(WEIGHT_DTYPE)
                block = {name: np.ascontiguousarray(rows[name.removeprefix("index/").removeprefix("nodes/")])
                         for name in columns if name not in ("weight", "nodes/counts")}
                block["weight"] = weight
                if graphs:
                    block["nodes/counts"] = np.ascontiguousarray(rows["count"])
                rows_out.write(r0, block)
                if nodes_out is not None:
                    idx = ragged_index(start[order], rows["count"])
                    x = _load(directory / f"x.{b}", x_dtype, width_x)[idx] if width_x else np.zeros((len(idx), 0), x_dtype)
                    t = (_load(directory / f"truth.{b}", t_dtype, width_t)[idx] if width_t
                         else np.zeros((len(idx), 0), t_dtype))
                    nodes_out.write(n0, {"nodes/x": np.ascontiguousarray(x), "nodes/truth": np.ascontiguousarray(t)})
                    if half is not None:
                        half += count_half_patterns([x[:, j] for j in range(width_x)])
                    n0 += len(idx)
                r0 += len(rows)
                for kind in ("rows", "x", "truth"):
                    (directory / f"{kind}.{b}").unlink(missing_ok=True)
        writer.check()
        if half is not None:
            writer.write("nodes/x_half_counts", half)
            writer.set_attrs("nodes/x_half_counts", names=names["x"])
    return n_nodes
