"""Write a resampled split: its rows, with each jet's selection outputs and graph nodes, in final order.

The rows point at (selections file, row) in shuffled order, so reading them in that order would
seek across every file for every chunk. Instead each source file is read once, in row order, one
block at a time, and each jet is scattered straight to its output position (its nodes to their
output offsets) in scratch arrays that live in memory while small and in memory-mapped files in a
temporary directory beyond that; the scratch arrays are then written to the HDF5 target front to
back. Memory the process owns is bounded by one block of one source file, never by the split;
larger splits live in file-backed pages the kernel can write out and drop.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.columns import ragged_index
from tracerflow.io import graphs_file, selections_file
from tracerflow.io.atomic import temporary_path
from tracerflow.io.faults import output_error
from tracerflow.io.h5target import H5Writer, check_schema
from tracerflow.io.resampled_file import (COUNT_DTYPE, INDEX_COLUMNS, INDEX_DTYPES, LABEL_DTYPE, SCHEMA,
                                          SCHEMA_VERSION, WEIGHT_DTYPE)
from tracerflow.write.placed import PlacedDatasets, reserve

BLOCK_ROWS = 32768
WRITE_BLOCK_BYTES = 4 << 20
IN_MEMORY_BYTES = 64 << 20


@dataclass(frozen=True)
class SourcePaths:
    """The selections and graphs files of one (sample, file), as named in a resampled split
    (``graphs`` is None in an analysis without graphs: its rows have no nodes)."""

    selections: Path
    graphs: Path | None


def source_paths(output_root: Path, sources: Sequence[tuple[str, str]], graphs: bool = True) -> list[SourcePaths]:
    """The selections and graphs files of each (sample, logical file) below ``output_root``; no
    graphs files when ``graphs`` is false."""
    def stem(logical: str) -> str:
        return logical[:-5] if logical.endswith(".root") else logical

    return [SourcePaths(output_root / "selections" / s / f"{stem(f)}.h5",
                        output_root / "graphs" / s / f"{stem(f)}.h5" if graphs else None)
            for s, f in sources]


@dataclass
class _Source:
    """What the gather needs of one source: its output positions (in row order) and graph rows."""

    paths: SourcePaths
    positions: np.ndarray
    graph: np.ndarray
    node_start: np.ndarray

    @property
    def node_count(self) -> np.ndarray:
        """Nodes of the jet at each of ``positions``."""
        return self.node_start[self.graph + 1] - self.node_start[self.graph]


def write_resampled(path: str | os.PathLike, rows: Mapping[str, np.ndarray], *, split: str,
                    classes: Sequence[str], sources: Sequence[tuple[str, str]], paths: Sequence[SourcePaths],
                    config_digest: str, created_by: str, attrs: Mapping[str, Any] | None = None) -> int:
    """Write one split's output rows (``source``, ``row``, ``hash``, ``item``, ``copy``, ``label``,
    ``weight``, in final order) with their jets' selection outputs and graph nodes; return the node count.

    ``paths[i]`` are the files of ``sources[i]``. A graphs file that does not line up with its
    selections file, or sources that disagree on their outputs or node names, raise naming the file.
    Without graphs files the split has no ``nodes/`` group.
    Scratch files (large splits only) live in a temporary directory beside ``path`` (``.<name>.tmp-<pid>-<thread>``).
    """
    if len(paths) != len(sources):
        raise ValueError(f"{path}: {len(sources)} sources, {len(paths)} paths given")
    n = len(rows["row"])
    plan, names = _plan(rows, paths)
    counts = np.zeros(n, dtype=np.int64)
    for s in plan:
        counts[s.positions] = s.node_count
    offsets = np.concatenate([[0], np.cumsum(counts)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_directory(path) as tmp:
        scratch = _Scratch(tmp)
        jets = {v: scratch.array(f"jets.{v}", (n,), dtype) for v, dtype in names["jets"].items()}
        entry = scratch.array("entry", (n,), np.dtype(np.int64))
        x = scratch.array("x", (int(offsets[-1]), len(names["x"])), names["x_dtype"])
        truth = scratch.array("truth", (int(offsets[-1]), len(names["truth"])), names["truth_dtype"])
        for s in plan:
            _scatter_source(s, rows, offsets, jets, entry, x, truth)
        with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, None,
                      attrs={"split": split, "classes": list(classes), "sources": [list(s) for s in sources],
                             "n_rows": n, **dict(attrs or {})}) as writer:
            columns = {f"index/{c}": np.asarray(rows[c], dtype=INDEX_DTYPES[c]) for c in INDEX_COLUMNS}
            columns["label"] = np.asarray(rows["label"], dtype=LABEL_DTYPE)
            columns["weight"] = np.asarray(rows["weight"], dtype=WEIGHT_DTYPE)
            columns["index/entry"] = entry
            columns.update({f"jets/{v}": values for v, values in jets.items()})
            if names["graphs"]:
                columns["nodes/counts"] = counts.astype(COUNT_DTYPE)
            _write_blocks(writer, columns)
            if not names["graphs"]:
                return 0
            _write_blocks(writer, {"nodes/x": x, "nodes/truth": truth})
            writer.set_attrs("nodes/x", names=names["x"])
            writer.set_attrs("nodes/truth", names=names["truth"])
            if x.dtype == np.float16:
                from tracerflow.write.kernels import count_half_patterns  # numba: only when writing

                writer.write("nodes/x_half_counts", count_half_patterns([x[:, j] for j in range(x.shape[1])]))
                writer.set_attrs("nodes/x_half_counts", names=names["x"])
    return int(offsets[-1])


def _plan(rows: Mapping[str, np.ndarray], paths: Sequence[SourcePaths]) -> tuple[list[_Source], dict[str, Any]]:
    """Each source's output positions, graph rows and node counts, and the names every source shares.

    Reads only index columns and node counts; checks that each graphs file lines up with its
    selections file and that all sources have the same selection outputs and node names.
    """
    source = np.asarray(rows["source"])
    order = np.argsort(source, kind="stable")
    bounds = np.searchsorted(source[order], np.arange(len(paths) + 1))
    plan: list[_Source] = []
    names: dict[str, Any] | None = None
    for i, p in enumerate(paths):
        positions = order[bounds[i]:bounds[i + 1]]
        with h5py.File(p.selections, "r") as sel, _open_graphs(p.graphs) as graphs:
            mine = names_of(sel, graphs)
            if names is None:
                names = mine
            elif mine != names:
                raise ValueError(f"{p.selections}: {_difference(mine, names)}")
            if not len(positions):
                continue
            positions = positions[np.argsort(rows["row"][positions], kind="stable")]
            graph = sel["index/row"][:][rows["row"][positions]].astype(np.int64)
            if graphs is None:
                node_counts = np.zeros(int(graph.max()) + 1, np.int64)
            else:
                if not np.array_equal(graphs["index/hash"][:][graph], rows["hash"][positions]):
                    raise RuntimeError(f"{p.graphs}: graphs do not line up with {p.selections}")
                node_counts = graphs["nodes/counts"][:].astype(np.int64)
        node_start = np.concatenate([[0], np.cumsum(node_counts)])
        plan.append(_Source(p, positions, graph, node_start))
    if names is None:
        raise ValueError("a resampled split needs at least one source file")
    return plan, names


def names_of(sel: h5py.File, graphs: h5py.File | None) -> dict[str, Any]:
    """Selection outputs with their dtypes, and node feature and truth names and dtypes, of one
    source's open selections and graphs files (schemas checked): what every source must share."""
    check_schema(sel, selections_file.SCHEMA, selections_file.SCHEMA_VERSION)
    names = {"jets": {v: sel[f"derived/{v}"].dtype for v in sorted(sel["derived"].keys())}, "graphs": False,
             "x": [], "x_dtype": np.dtype(np.float32), "truth": [], "truth_dtype": np.dtype(np.float32)}
    if graphs is not None:
        check_schema(graphs, graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION)
        names.update({"graphs": True, "x": json.loads(graphs["nodes/x"].attrs["names"]),
                      "x_dtype": graphs["nodes/x"].dtype,
                      "truth": json.loads(graphs["truth/nodes"].attrs["names"]),
                      "truth_dtype": graphs["truth/nodes"].dtype})
    return names


def _open_graphs(path: Path | None) -> Any:
    """The graphs file at ``path`` opened for reading, or a context holding None when there is none."""
    return h5py.File(path, "r") if path is not None else contextlib.nullcontext()


def _difference(mine: Mapping[str, Any], first: Mapping[str, Any]) -> str:
    """What one source has that the first source has not: names the output, node feature or dtype."""
    for name in sorted(set(mine["jets"]) | set(first["jets"])):
        if name not in mine["jets"] or name not in first["jets"]:
            has = "has" if name in mine["jets"] else "lacks"
            return f"{has} the selection output {name!r}, unlike the first source"
        if mine["jets"][name] != first["jets"][name]:
            return (f"selection output {name!r} is {mine['jets'][name]}, {first['jets'][name]} in the first source: "
                    "give its expression one type in every sample")
    for key, what in (("x", "node features"), ("truth", "node truth"), ("x_dtype", "node feature dtype")):
        if mine[key] != first[key]:
            return f"{what} {mine[key]} differ from the first source's {first[key]}"
    return "differs from the first source"


@contextlib.contextmanager
def _scratch_directory(path: Path) -> Iterator[Path]:
    """A directory for the scratch files of writing ``path``, beside it and named as its temporary
    files are (``.<name>.tmp-<pid>-<thread>``), removed when the block ends."""
    directory = temporary_path(path, thread=True)
    try:
        directory.mkdir(exist_ok=True)
        yield directory
    except OSError as err:  # a full disk met by a scratch file is one writing ``path``
        raise output_error(err, path) or err
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _Scratch:
    """Arrays to scatter into: in memory up to ``IN_MEMORY_BYTES``, memory-mapped files in ``tmp`` beyond."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if size <= IN_MEMORY_BYTES:
            return np.zeros(shape, dtype)
        path = self.tmp / f"{name}.bin"
        with open(path, "wb") as handle:
            try:  # the disk space first: a full disk met through the map would kill the process (SIGBUS)
                reserve(handle.fileno(), 0, size, zeros=True)
            except OSError as err:
                raise OSError(err.errno, err.strerror, str(path)) from None
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


def _scatter_source(s: _Source, rows: Mapping[str, np.ndarray], offsets: np.ndarray, jets: dict[str, np.ndarray],
                    entry: np.ndarray, x: np.ndarray, truth: np.ndarray) -> None:
    """Copy one source's jets (selection outputs and tree entries) and nodes, block by block in row
    order, to their output places."""
    with h5py.File(s.paths.selections, "r") as sel, _open_graphs(s.paths.graphs) as graphs:
        for lo in range(0, len(s.positions), BLOCK_ROWS):
            positions = s.positions[lo:lo + BLOCK_ROWS]
            row = rows["row"][positions]
            r0, r1 = int(row[0]), int(row[-1]) + 1
            for v, out in jets.items():
                out[positions] = sel[f"derived/{v}"][r0:r1][row - r0]
            entry[positions] = sel["index/entry"][r0:r1][row - r0]
            if graphs is None:
                continue
            graph = s.graph[lo:lo + BLOCK_ROWS]
            n0, n1 = int(s.node_start[graph.min()]), int(s.node_start[graph.max() + 1])
            counts = s.node_count[lo:lo + BLOCK_ROWS]
            src = ragged_index(s.node_start[graph] - n0, counts)
            dst = ragged_index(offsets[positions], counts)
            _copy_rows(x, dst, graphs["nodes/x"][n0:n1], src)
            _copy_rows(truth, dst, graphs["truth/nodes"][n0:n1], src)


def _copy_rows(out: np.ndarray, dst: np.ndarray, values: np.ndarray, src: np.ndarray) -> None:
    """``out[dst] = values[src]`` for 2-d arrays, moving each row as one opaque item."""
    if not len(dst) or not out.shape[1]:
        return
    row = np.dtype((np.void, out.dtype.itemsize * out.shape[1]))
    out.reshape(len(out), -1).view(row)[dst, 0] = np.ascontiguousarray(values).view(row)[src, 0]


def _write_blocks(writer: H5Writer, columns: Mapping[str, np.ndarray]) -> None:
    """Write each column, all of one length, as a contiguous dataset in blocks of about
    ``WRITE_BLOCK_BYTES``: contiguous datasets are what readers map without copying
    (:class:`~tracerflow.io.contiguous_views.ContiguousViews`)."""
    lengths = {len(values) for values in columns.values()}
    assert len(lengths) == 1, "columns of one call share their length"
    placed = PlacedDatasets(writer, lengths.pop())
    for name, values in columns.items():
        placed.create(name, values.dtype, values.shape[1:])
    with placed:
        for name, values in columns.items():
            row_bytes = max(1, values.dtype.itemsize * int(np.prod(values.shape[1:], dtype=np.int64)))
            step = max(1, WRITE_BLOCK_BYTES // row_bytes)
            for lo in range(0, len(values), step):
                placed.write(lo, {name: np.ascontiguousarray(values[lo:lo + step])})
