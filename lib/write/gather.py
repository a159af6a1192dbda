"""Collect a resampled split's jets, with their tracks, into train chunks in the split's final order.

The split's rows point at (selections file, row) in shuffled order, so reading them in that
order would seek across every file for every chunk. Instead each source file is read once,
in row order, and its jets are scattered into buckets of ``chunk_size`` consecutive output
positions (kept in memory when the split is one bucket, else in raw files in a temporary
directory); each bucket is then put in order and handed out as a :class:`TrainChunk`. Memory
is bounded by a bucket plus one block of one source file, never by the split.
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
        self._memory: dict[str, list[np.ndarray]] = {}
        self._shapes: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
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
        """Append each jet's arrays to the bucket of its output position."""
        order = np.argsort(buckets, kind="stable")
        buckets = buckets[order]
        cut = np.flatnonzero(np.diff(buckets)) + 1
        for part in np.split(np.arange(len(buckets)), cut):
            if not len(part):
                continue
            bucket = int(buckets[part[0]])
            for name, values in arrays.items():
                piece = np.ascontiguousarray(values[order[part]])
                if self._tmp is None:
                    self._memory.setdefault(name, []).append(piece)
                else:
                    with open(self._tmp / f"{bucket}.{name}", "ab") as out:
                        out.write(piece.tobytes())
                    self._shapes[name] = (piece.dtype, piece.shape[1:])

    def _load(self, bucket: int) -> dict[str, np.ndarray]:
        if self._tmp is None:
            return {name: np.concatenate(parts) for name, parts in self._memory.items()}
        out = {}
        for name, (dtype, tail) in self._shapes.items():
            path = self._tmp / f"{bucket}.{name}"
            data = np.fromfile(path, dtype=dtype) if path.exists() else np.zeros(0, dtype)
            out[name] = data.reshape((-1,) + tail)
        return out

    def _chunk(self, bucket: int) -> TrainChunk:
        lo, hi = bucket * self.chunk_size, min(self.n, (bucket + 1) * self.chunk_size)
        arrays = self._load(bucket) if hi > lo else {}
        if hi > lo:
            order = np.argsort(arrays.pop("position"), kind="stable")
            arrays = {name: values[order] for name, values in arrays.items()}
            if len(order) != hi - lo:
                raise RuntimeError(f"bucket {bucket}: {len(order)} jets gathered, {hi - lo} expected")
        c = self.columns
        empty_tracks = np.zeros((0, c.max_tracks), np.float32)
        return TrainChunk(
            jets={v: arrays.get(f"jet.{v}", np.zeros(0, np.float32)) for v in c.jet_vars},
            tracks={v: arrays[f"track.{v}"] if arrays else empty_tracks for v in c.track_vars},
            valid=arrays["valid"] if arrays else np.zeros((0, c.max_tracks), bool),
            label=self.rows["label"][lo:hi].astype(np.int64),
            weight=self.rows["weight"][lo:hi],
            fold=self.fold[lo:hi],
            hash=self.rows["hash"][lo:hi],
            track_labels={v: arrays[f"track_label.{v}"] if arrays else empty_tracks.astype(np.int16)
                          for v in c.track_labels},
            add_labels={v: arrays.get(f"add.{v}", np.zeros(0, np.float32)) for v in c.add_labels},
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
        features = self.graphs["nodes/x"][n0:n1] if self.feature_idx else None
        for v, j in zip(c.track_vars, self.feature_idx):
            padded = np.zeros(valid.shape, np.float32)
            padded[valid] = features[node, j]
            out[f"track.{v}"] = padded
        truth = self.graphs["truth/nodes"][n0:n1] if self.truth_idx else None
        for v, j in zip(c.track_labels, self.truth_idx):
            padded = np.full(valid.shape, -1, np.int16)
            padded[valid] = truth[node, j]
            out[f"track_label.{v}"] = padded
        return out
