"""Collect a resampled split's jets, with their tracks, into train chunks in the split's final order.

The split's rows point at (selections file, row) in shuffled order, so reading them in that
order would seek across every file for every chunk. Instead each source file is read once,
in row order, and each jet is written straight to its place in the bucket of ``chunk_size``
consecutive output positions it belongs to (an array in memory when the split is one bucket,
else a memory-mapped file in a temporary directory); each bucket is then handed out
as a :class:`TrainChunk`, already in order. Memory the process owns is bounded by a bucket plus
one block of one source file, never by the split; larger splits live in file-backed pages the
kernel can write out and drop.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from tracerflow.hashing import fold_of
from tracerflow.io import graphs_file, selections_file
from tracerflow.io.h5target import check_schema
from tracerflow.io.resampled_file import ResampledFile
from tracerflow.write.chunk import TrainChunk


@dataclass(frozen=True)
class SourcePaths:
    """The selections and graphs files of one (sample, file), as named in a resampled split."""

    selections: Path
    graphs: Path


@dataclass(frozen=True)
class Columns:
    """What a train chunk carries: jet variables and add_labels (selection outputs), track
    variables and labels (graph node features and node truth), and the track slots per jet."""

    jet_vars: tuple[str, ...]
    add_labels: tuple[str, ...]
    track_vars: tuple[str, ...]
    track_labels: tuple[str, ...]
    max_tracks: int


class TrainChunks:
    """Re-iterable train chunks of one resampled split; use as a context manager.

    Fold ids are ``fold_of(hash, n_folds, seed)``: a jet's fold follows its event.
    """

    def __init__(self, resampled: ResampledFile, sources: Sequence[SourcePaths], columns: Columns, *,
                 n_folds: int, seed: int, chunk_size: int, tmp_dir: str | os.PathLike | None = None) -> None:
        if len(sources) != len(resampled.sources):
            raise ValueError(f"{resampled.path}: {len(resampled.sources)} sources, {len(sources)} paths given")
        self.rows = resampled.rows
        self.columns = columns
        self.chunk_size = int(chunk_size)
        self.n = len(resampled)
        self.fold = fold_of(self.rows["hash"], n_folds, seed)
        self._n_buckets = max(1, -(-self.n // self.chunk_size))
        self._tmp = Path(tempfile.mkdtemp(prefix=".gather-", dir=tmp_dir)) if self._n_buckets > 1 else None
        self._buckets: dict[int, dict[str, np.ndarray]] = {}
        self._layout: list[tuple[str, np.dtype, tuple[int, ...]]] | None = None
        try:
            self._scatter(sources)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "TrainChunks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary bucket files."""
        self._buckets.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[TrainChunk]:
        for bucket in range(self._n_buckets):
            yield self._chunk(bucket)

    def _scatter(self, sources: Sequence[SourcePaths]) -> None:
        order = np.argsort(self.rows["source"], kind="stable")
        bounds = np.searchsorted(self.rows["source"][order], np.arange(len(sources) + 1))
        for s, paths in enumerate(sources):
            positions = order[bounds[s]:bounds[s + 1]]
            if len(positions):
                positions = positions[np.argsort(self.rows["row"][positions], kind="stable")]
                self._scatter_source(paths, positions)

    def _scatter_source(self, paths: SourcePaths, positions: np.ndarray) -> None:
        """Read the rows ``positions`` need from one source, block by block, into their buckets."""
        with h5py.File(paths.selections, "r") as sel, h5py.File(paths.graphs, "r") as graphs:
            check_schema(sel, selections_file.SCHEMA, selections_file.SCHEMA_VERSION)
            check_schema(graphs, graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION)
            reader = _SourceReader(sel, graphs, self.columns)
            for lo in range(0, len(positions), self.chunk_size):
                block = positions[lo:lo + self.chunk_size]
                arrays = reader.read(self.rows["row"][block], self.rows["hash"][block])
                arrays["position"] = block
                self._store(arrays, block // self.chunk_size)

    def _store(self, arrays: dict[str, np.ndarray], buckets: np.ndarray) -> None:
        """Write each jet's arrays at its output position inside its bucket."""
        positions = arrays.pop("position")
        order = np.argsort(buckets, kind="stable")
        sorted_buckets = buckets[order]
        cuts = np.flatnonzero(np.diff(sorted_buckets)) + 1
        for part in np.split(order, cuts):
            bucket = int(buckets[part[0]])
            local = positions[part] - bucket * self.chunk_size
            columns = self._bucket(bucket, arrays)
            for name, values in arrays.items():
                columns[name][local] = values[part]

    def _bucket(self, bucket: int, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The bucket's columns, each contiguous, laid out one after another in one buffer: in
        memory for a single bucket, else one memory-mapped file per bucket, open until close."""
        if bucket not in self._buckets:
            if self._layout is None:
                self._layout = [(name, v.dtype, v.shape[1:]) for name, v in like.items()]
            rows = min(self.n, (bucket + 1) * self.chunk_size) - bucket * self.chunk_size
            sizes = [rows * dtype.itemsize * int(np.prod(tail, dtype=np.int64)) for _, dtype, tail in self._layout]
            total = max(1, sum(sizes))
            if self._tmp is None:
                buffer = np.zeros(total, np.uint8)
            else:
                buffer = np.memmap(self._tmp / f"{bucket}.bin", dtype=np.uint8, mode="w+", shape=(total,))
            columns, offset = {}, 0
            for (name, dtype, tail), size in zip(self._layout, sizes):
                columns[name] = buffer[offset:offset + size].view(dtype).reshape((rows,) + tail)
                offset += size
            self._buckets[bucket] = columns
        return self._buckets[bucket]

    def _chunk(self, bucket: int) -> TrainChunk:
        lo, hi = bucket * self.chunk_size, min(self.n, (bucket + 1) * self.chunk_size)
        c = self.columns
        columns = self._buckets.get(bucket)
        if columns is None and hi > lo:
            raise RuntimeError(f"bucket {bucket}: no jet was gathered into it")

        def column(name: str, tail: tuple[int, ...], dtype: type) -> np.ndarray:
            return np.zeros((0,) + tail, dtype) if columns is None else columns[name]

        track = (c.max_tracks,)
        tracks = column("tracks", track + (len(c.track_vars),), np.float16) if c.track_vars else None
        return TrainChunk(
            jets={v: column(f"jet.{v}", (), np.float32) for v in c.jet_vars},
            tracks={v: tracks[..., j] for j, v in enumerate(c.track_vars)},
            valid=column("valid", track, bool),
            label=self.rows["label"][lo:hi].astype(np.int64),
            weight=self.rows["weight"][lo:hi],
            fold=self.fold[lo:hi],
            hash=self.rows["hash"][lo:hi],
            track_labels={v: column(f"track_label.{v}", track, np.int16) for v in c.track_labels},
            add_labels={v: column(f"add.{v}", (), np.float32) for v in c.add_labels},
        )


class _SourceReader:
    """Jet columns from a selections file and padded tracks from the graphs file beside it."""

    def __init__(self, sel: h5py.File, graphs: h5py.File, columns: Columns) -> None:
        self.sel, self.graphs, self.columns = sel, graphs, columns
        node_names = json.loads(graphs["nodes/x"].attrs["names"])
        truth_names = json.loads(graphs["truth/nodes"].attrs["names"])
        missing = [v for v in columns.track_vars if v not in node_names]
        missing += [v for v in columns.track_labels if v not in truth_names]
        if missing:
            raise KeyError(f"{graphs.filename}: no node feature or truth {missing[0]!r}")
        self.feature_idx = [node_names.index(v) for v in columns.track_vars]
        self.truth_idx = [truth_names.index(v) for v in columns.track_labels]
        counts = graphs["nodes/counts"][:].astype(np.int64)
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def read(self, rows: np.ndarray, hashes: np.ndarray) -> dict[str, np.ndarray]:
        """Columns of the selections ``rows`` (sorted), their tracks, padded to ``max_tracks``."""
        c = self.columns
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        local = rows - lo
        out: dict[str, np.ndarray] = {}
        for prefix, names in (("jet", c.jet_vars), ("add", c.add_labels)):
            for v in names:
                key = f"derived/{v}"
                if key not in self.sel:
                    raise KeyError(f"{self.sel.filename}: no selection output {v!r}")
                out[f"{prefix}.{v}"] = self.sel[key][lo:hi][local].astype(np.float32)
        graph = self.sel["index/row"][lo:hi][local].astype(np.int64)
        g_hash = self.graphs["index/hash"][int(graph.min()):int(graph.max()) + 1][graph - graph.min()]
        if not np.array_equal(g_hash, hashes):
            raise RuntimeError(f"{self.graphs.filename}: graphs do not line up with {self.sel.filename}")
        out.update(self._tracks(graph))
        return out

    def _tracks(self, graph: np.ndarray) -> dict[str, np.ndarray]:
        c = self.columns
        n0, n1 = int(self.offsets[graph.min()]), int(self.offsets[graph.max() + 1])
        counts = np.minimum(self.counts[graph], c.max_tracks)
        slots = np.arange(c.max_tracks)
        valid = slots[None, :] < counts[:, None]
        node = (self.offsets[graph][:, None] + slots[None, :])[valid] - n0
        out: dict[str, np.ndarray] = {"valid": valid}
        if self.feature_idx:
            features = self.graphs["nodes/x"][n0:n1]
            padded = np.zeros(valid.shape + (len(self.feature_idx),), features.dtype)
            padded[valid] = features[node][:, self.feature_idx]
            out["tracks"] = padded
        truth = self.graphs["truth/nodes"][n0:n1] if self.truth_idx else None
        for v, j in zip(c.track_labels, self.truth_idx):
            padded = np.full(valid.shape, -1, np.int16)
            padded[valid] = truth[node, j]
            out[f"track_label.{v}"] = padded
        return out
