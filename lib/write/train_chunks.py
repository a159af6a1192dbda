"""Read a resampled split front to back as train chunks: the columns the ``write`` block asks for.

A jet keeps its first ``max_tracks`` graph nodes as tracks (graph nodes come in the order the
graph template gives them); fold ids are ``fold_of(hash, n_folds, seed)``, so a jet's fold
follows its event.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np

from tracerflow.columns import ragged_index
from tracerflow.hashing import fold_of
from tracerflow.io.resampled_file import ResampledFile
from tracerflow.write.chunk import TrainChunk
from tracerflow.write.columns import Columns  # noqa: F401  (its home; imported from here too)
from tracerflow.write.kernels import count_half_patterns


class TrainChunks:
    """Re-iterable train chunks of ``chunk_size`` jets of one resampled split; use as a context manager."""

    def __init__(self, path: str | os.PathLike, columns: Columns, *, n_folds: int, seed: int,
                 chunk_size: int) -> None:
        self.file = ResampledFile(path)
        self.columns = columns
        self.n_folds, self.seed = int(n_folds), int(seed)
        self.chunk_size = int(chunk_size)

    def __enter__(self) -> "TrainChunks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return len(self.file)

    def __iter__(self) -> Iterator[TrainChunk]:
        for start in range(0, len(self), self.chunk_size):
            stop = min(len(self), start + self.chunk_size)
            yield self.read(start, stop)
            self.file.release()
            if self.watch is not None:
                self.watch(stop, len(self))

    #: Called as ``watch(jets read, jets)`` after each chunk a pass over the jets has used.
    watch: Callable[[int, int], None] | None = None

    def inputs(self, jets: bool = True, tracks: bool = True
               ) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """``(jet variables, track variables)`` of each chunk, reading nothing else: what a scale pass
        needs. With ``jets=False`` or ``tracks=False`` that group is left out (empty)."""
        for start in range(0, len(self), self.chunk_size):
            stop = min(len(self), start + self.chunk_size)
            values = self.file.jets(self.columns.jet_vars, start, stop) if jets else {}
            yield ({v: values[v].astype(np.float32, copy=False) for v in values},
                   self._tracks(start, stop)[1] if tracks else {})
            self.file.release()

    def track_half_counts(self) -> dict[str, np.ndarray] | None:
        """Float16 bit-pattern counts of each track variable over the tracks the chunks carry, from
        the counts the resampled file stores (less the nodes beyond ``max_tracks``, read from the
        chunks that have such jets); None when the file stores none."""
        c, f = self.columns, self.file
        counts = f.half_counts(c.track_vars)
        if counts is None or not c.track_vars:
            return None
        for start in range(0, len(self), self.chunk_size):
            stop = min(len(self), start + self.chunk_size)
            offsets = f.node_offsets(start, stop)
            nodes = np.diff(offsets)
            jets = np.flatnonzero(nodes > c.max_tracks)
            if len(jets):
                beyond = ragged_index(offsets[jets] + c.max_tracks - offsets[0], nodes[jets] - c.max_tracks)
                dropped = f.nodes("x", c.track_vars, start, stop)[beyond]
                counts = counts - count_half_patterns([dropped[:, j] for j in range(len(c.track_vars))])
            f.release()
        return dict(zip(c.track_vars, counts))

    def read(self, start: int, stop: int) -> TrainChunk:
        """Jets ``[start, stop)`` as a train chunk, tracks cut to ``max_tracks`` per jet."""
        c, f = self.columns, self.file
        jets = f.jets(list(dict.fromkeys([*c.jet_vars, *c.add_labels, *c.targets])), start, stop)
        kept, tracks = self._tracks(start, stop)
        truth = self._cut(f.nodes("truth", c.track_labels, start, stop), start, stop)
        hashes = f.index("hash", start, stop)
        return TrainChunk(
            jets={v: jets[v].astype(np.float32, copy=False) for v in c.jet_vars},
            counts=kept,
            tracks=tracks,
            max_tracks=c.max_tracks,
            label=f.index("label", start, stop).astype(np.int64),
            weight=f.index("weight", start, stop),
            fold=fold_of(hashes, self.n_folds, self.seed),
            hash=hashes,
            track_labels={v: truth[:, j].astype(np.int16) for j, v in enumerate(c.track_labels)},
            add_labels={v: jets[v].astype(np.float32, copy=False) for v in c.add_labels},
            targets={v: jets[v].astype(np.float32, copy=False) for v in c.targets},
            ids={"source": f.index("source", start, stop), "entry": f.index("entry", start, stop),
                 "item": f.index("item", start, stop)},
        )

    def _tracks(self, start: int, stop: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Tracks kept per jet of ``[start, stop)`` and their track variables, back to back."""
        c = self.columns
        features = self._cut(self.file.nodes("x", c.track_vars, start, stop), start, stop)
        kept = np.minimum(self.file.node_counts(start, stop), c.max_tracks)
        return kept, {v: features[:, j] for j, v in enumerate(c.track_vars)}

    def _cut(self, nodes: np.ndarray, start: int, stop: int) -> np.ndarray:
        """The rows of ``nodes`` (of jets ``[start, stop)``) within each jet's first ``max_tracks``."""
        counts = self.file.node_counts(start, stop)
        if not (counts > self.columns.max_tracks).any():
            return nodes
        starts = np.cumsum(counts) - counts
        return nodes[ragged_index(starts, np.minimum(counts, self.columns.max_tracks))]
