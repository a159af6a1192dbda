"""The unit WriteTrainSample streams: one chunk of jets in their final order, as numpy arrays.

Tracks travel compactly, the tracks of all jets back to back with ``counts`` per jet, and are
padded to ``max_tracks`` slots only by the writer that stores them: most slots are padding
(about four in five in the toy sample), so scaling and accumulating over compact tracks does
a fifth of the work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from tracerflow.columns import ragged_index

BLOCK_BYTES = 8 << 20
MIN_BLOCK_JETS = 256


@dataclass
class TrainChunk:
    """``n`` jets with their tracks, labels, weights, fold ids and event hashes (and the
    regression ``targets``, raw, per jet, and ``ids``: where each jet comes from, ``source``
    (position among the resampled file's sources), ``entry`` in its ROOT tree and ``item``, its
    position within the event).

    ``jets[v]``, ``label`` and the other per-jet arrays are ``(n,)``. Jet ``i`` has ``counts[i]``
    (at most ``max_tracks``) tracks; ``tracks[v]`` and ``track_labels[v]`` hold the tracks of
    all jets back to back, ``(counts.sum(),)``. :attr:`valid` and :meth:`padded` give the
    ``(n, max_tracks)`` view with the real tracks in the first slots.
    """

    jets: dict[str, np.ndarray]
    counts: np.ndarray
    tracks: dict[str, np.ndarray]
    max_tracks: int
    label: np.ndarray
    weight: np.ndarray
    fold: np.ndarray
    hash: np.ndarray
    track_labels: dict[str, np.ndarray] = field(default_factory=dict)
    add_labels: dict[str, np.ndarray] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_padded(cls, *, jets: dict[str, np.ndarray], tracks: dict[str, np.ndarray], valid: np.ndarray,
                    label: np.ndarray, weight: np.ndarray, fold: np.ndarray, hash: np.ndarray,
                    track_labels: dict[str, np.ndarray] | None = None,
                    add_labels: dict[str, np.ndarray] | None = None) -> "TrainChunk":
        """A chunk from ``(n, max_tracks)`` track arrays whose ``valid`` slots come first in every jet."""
        valid = np.asarray(valid, dtype=bool)
        if valid.ndim != 2:
            raise ValueError(f"valid has shape {valid.shape}, expected (n, max_tracks)")
        counts = valid.sum(axis=1)
        if not np.array_equal(valid, np.arange(valid.shape[1])[None, :] < counts[:, None]):
            raise ValueError("valid track slots must come first in every jet")
        return cls(jets=jets, counts=counts.astype(np.int64), tracks={k: np.asarray(v)[valid] for k, v in tracks.items()},
                   max_tracks=int(valid.shape[1]), label=label, weight=weight, fold=fold, hash=hash,
                   track_labels={k: np.asarray(v)[valid] for k, v in (track_labels or {}).items()},
                   add_labels=dict(add_labels or {}))

    def __len__(self) -> int:
        return int(len(self.label))

    @property
    def valid(self) -> np.ndarray:
        """``(n, max_tracks)`` bool: which slots hold a track."""
        from tracerflow.write.kernels import valid_slots  # numba: loaded by the first chunk, not by imports

        return valid_slots(self.counts, self.max_tracks)

    def padded(self, values: np.ndarray, fill: float | int = 0, out: np.ndarray | None = None) -> np.ndarray:
        """Per-track ``values`` of this chunk as ``(n, max_tracks, ...)``, ``fill`` in padding slots
        (written into ``out`` when given)."""
        from tracerflow.write.kernels import pad_tracks

        return pad_tracks(values, self.counts, self.max_tracks, fill, out)

    def validate(self) -> None:
        """Raise ``ValueError`` when an array's shape does not fit the chunk's jets and tracks."""
        n = len(self)
        counts = np.asarray(self.counts)
        if counts.shape != (n,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({n},)")
        if counts.size and (counts.min() < 0 or counts.max() > self.max_tracks):
            raise ValueError(f"track counts must lie in [0, {self.max_tracks}], got [{counts.min()}, {counts.max()}]")
        per_jet = {"label": self.label, "weight": self.weight, "fold": self.fold, "hash": self.hash}
        per_jet.update({f"jets[{k!r}]": v for k, v in self.jets.items()})
        per_jet.update({f"add_labels[{k!r}]": v for k, v in self.add_labels.items()})
        per_jet.update({f"targets[{k!r}]": v for k, v in self.targets.items()})
        per_jet.update({f"ids[{k!r}]": v for k, v in self.ids.items()})
        for name, arr in per_jet.items():
            if np.shape(arr) != (n,):
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected ({n},)")
        n_tracks = int(counts.sum())
        per_track = {f"tracks[{k!r}]": v for k, v in self.tracks.items()}
        per_track.update({f"track_labels[{k!r}]": v for k, v in self.track_labels.items()})
        for name, arr in per_track.items():
            if np.shape(arr) != (n_tracks,):
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected ({n_tracks},): one value per track")

    def rows(self, start: int, stop: int) -> "TrainChunk":
        """Jets ``[start, stop)`` with their tracks, as views into this chunk's arrays."""
        counts = np.asarray(self.counts)
        t0 = int(counts[:start].sum())
        t1 = t0 + int(counts[start:stop].sum())
        return TrainChunk(
            jets={k: v[start:stop] for k, v in self.jets.items()},
            counts=counts[start:stop],
            tracks={k: v[t0:t1] for k, v in self.tracks.items()},
            max_tracks=self.max_tracks,
            label=self.label[start:stop],
            weight=self.weight[start:stop],
            fold=self.fold[start:stop],
            hash=self.hash[start:stop],
            track_labels={k: v[t0:t1] for k, v in self.track_labels.items()},
            add_labels={k: v[start:stop] for k, v in self.add_labels.items()},
            targets={k: v[start:stop] for k, v in self.targets.items()},
            ids={k: v[start:stop] for k, v in self.ids.items()},
        )

    def blocks(self, padded_row_bytes: int, block_bytes: int = BLOCK_BYTES) -> Iterator["TrainChunk"]:
        """The chunk in consecutive pieces of a power-of-two number of jets whose padded track arrays,
        ``padded_row_bytes`` per jet, stay within ``block_bytes``: buffers that small are reused by the
        allocator, so padding them does not fault in fresh pages every time, a writer thread can store
        one while the next is made, and they fill whole HDF5 chunks (see ``chunk_rows_for``)."""
        step = max(MIN_BLOCK_JETS, block_bytes // max(1, padded_row_bytes))
        step = 1 << (step.bit_length() - 1)
        for start in range(0, len(self), step):
            yield self.rows(start, min(len(self), start + step))

    def take(self, index: np.ndarray) -> "TrainChunk":
        """The jets at ``index`` (integer positions or a boolean mask), in that order, with their tracks."""
        counts = np.asarray(self.counts, dtype=np.int64)
        rows = np.arange(len(self))[index]
        starts = np.cumsum(counts) - counts
        picked = counts[rows]
        tracks = ragged_index(starts[rows], picked)
        return TrainChunk(
            jets={k: v[rows] for k, v in self.jets.items()},
            counts=picked,
            tracks={k: v[tracks] for k, v in self.tracks.items()},
            max_tracks=self.max_tracks,
            label=self.label[rows],
            weight=self.weight[rows],
            fold=self.fold[rows],
            hash=self.hash[rows],
            track_labels={k: v[tracks] for k, v in self.track_labels.items()},
            add_labels={k: v[rows] for k, v in self.add_labels.items()},
            targets={k: v[rows] for k, v in self.targets.items()},
            ids={k: v[rows] for k, v in self.ids.items()},
        )
