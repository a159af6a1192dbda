"""The unit WriteTrainSample streams: one chunk of jets in their final order, as numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainChunk:
    """``n`` jets with their padded tracks, labels, weights, fold ids and event hashes.

    ``jets[v]`` is ``(n,)``; ``tracks[v]`` and ``track_labels[v]`` are ``(n, max_tracks)`` with
    ``valid`` marking the real track slots (track labels are -1 in padding).
    """

    jets: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]
    valid: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    fold: np.ndarray
    hash: np.ndarray
    track_labels: dict[str, np.ndarray] = field(default_factory=dict)
    add_labels: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.label))

    @property
    def max_tracks(self) -> int:
        return int(self.valid.shape[1])

    def validate(self) -> None:
        """Raise ``ValueError`` when an array's shape does not fit the chunk's jets and tracks."""
        n = len(self)
        if self.valid.ndim != 2 or self.valid.shape[0] != n:
            raise ValueError(f"valid has shape {self.valid.shape}, expected ({n}, max_tracks)")
        per_jet = {"label": self.label, "weight": self.weight, "fold": self.fold, "hash": self.hash}
        per_jet.update({f"jets[{k!r}]": v for k, v in self.jets.items()})
        per_jet.update({f"add_labels[{k!r}]": v for k, v in self.add_labels.items()})
        for name, arr in per_jet.items():
            if np.shape(arr) != (n,):
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected ({n},)")
        per_track = {f"tracks[{k!r}]": v for k, v in self.tracks.items()}
        per_track.update({f"track_labels[{k!r}]": v for k, v in self.track_labels.items()})
        for name, arr in per_track.items():
            if np.shape(arr) != self.valid.shape:
                raise ValueError(f"{name} has shape {np.shape(arr)}, expected {self.valid.shape}")

    def take(self, index: np.ndarray) -> "TrainChunk":
        """The jets at ``index`` (integer positions or a boolean mask), in that order."""
        return TrainChunk(
            jets={k: v[index] for k, v in self.jets.items()},
            tracks={k: v[index] for k, v in self.tracks.items()},
            valid=self.valid[index],
            label=self.label[index],
            weight=self.weight[index],
            fold=self.fold[index],
            hash=self.hash[index],
            track_labels={k: v[index] for k, v in self.track_labels.items()},
            add_labels={k: v[index] for k, v in self.add_labels.items()},
        )
