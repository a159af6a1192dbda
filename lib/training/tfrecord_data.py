"""Batches of a ConvertTFRecords split restricted to some folds, one shard at a time, equal to the train file's."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tracerflow.tfrecords.reader import load_metadata, read_shard
from tracerflow.training.batching import DEFAULT_BUCKET_ROWS
from tracerflow.training.data import CLASS_INDEX, BlockDataset, TargetTransform


class TFRecordsDataset(BlockDataset):
    """Iterate ``{jets, tracks, valid, label, weight}`` batches over the jets of ``folds`` of a TFRecords split.

    The blocks are the shards, decoded in numpy (:func:`~tracerflow.tfrecords.reader.read_shard`),
    so no TensorFlow runs beside torch; shuffling, ``set_epoch``, ``sort_by_nodes``, shards and
    DataLoader workers behave as in :class:`~tracerflow.training.data.TrainFileDataset`. ``label`` is the
    class index of the one-hot ``Y``; values are the train file's, bit for bit.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        folds: Iterable[int] | None = None,
        *,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        with_tracks: bool = True,
        drop_last: bool = False,
        sort_by_nodes: bool = False,
        bucket_rows: int = DEFAULT_BUCKET_ROWS,
        target: TargetTransform = CLASS_INDEX,
        shard: tuple[int, int] = (0, 1),
        even_shards: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.metadata = load_metadata(self.directory)
        self.folds = None if folds is None else sorted({int(k) for k in folds})
        super().__init__(batch_size=batch_size, shuffle=shuffle, seed=seed, with_tracks=with_tracks,
                         drop_last=drop_last, sort_by_nodes=sort_by_nodes, bucket_rows=bucket_rows, target=target,
                         shard=shard, even_shards=even_shards)

    def _select_blocks(self) -> list[tuple[int, int]]:
        """(shard index, selected rows) of each shard holding at least one jet of the folds; the rows
        themselves are kept (decoding a shard's fold ids again would cost more than they take)."""
        self._rows: dict[int, np.ndarray] = {}
        for index in range(len(self.metadata["shards"])):
            if self.folds is None:
                rows = np.arange(self.metadata["shards"][index]["n_jets"], dtype=np.int32)
            else:
                fold = read_shard(self.directory, index, ["fold"], metadata=self.metadata)["fold"]
                rows = np.flatnonzero(np.isin(fold, self.folds)).astype(np.int32)
            if len(rows):
                self._rows[index] = rows
        return [(index, len(rows)) for index, rows in self._rows.items()]

    def _block_rows(self, block: int) -> np.ndarray:
        return self._rows[block]

    def _read_blocks(self, blocks: Iterable[tuple[int, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The selected rows of each shard, in the order of its rows."""
        features = ["X_jets", "Y", "weight"] + (["X_trk", "valid"] if self.with_tracks else [])
        for index, rows in blocks:
            arrays = read_shard(self.directory, index, features, rows=rows, metadata=self.metadata)
            out = {"jets": arrays["X_jets"], "label": arrays["Y"].argmax(axis=1), "weight": arrays["weight"]}
            if self.with_tracks:
                out |= {"tracks": arrays["X_trk"], "valid": arrays["valid"]}
            yield out
