"""Batches of a umami train file restricted to some folds, read block by block so memory stays bounded."""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tracerflow.io.umami_groups import groups_of, path_in
from tracerflow.seeding import rng_for
from tracerflow.training.batching import DEFAULT_BUCKET_ROWS, batch_rows

DEFAULT_BLOCK_ROWS = 32768
LABEL_NAME = "jets/labels"
TARGETS_NAME = "jets/targets"


@dataclass(frozen=True)
class TargetTransform:
    """How the stored labels become what the loss compares the model with: class indices as they
    are (``multiclass``), 1 for the ``positive`` class index and 0 for the other (``binary``), or
    raw targets standardised as ``(y - shift) / scale`` per column (``regression``; the model's
    outputs are turned back by ``y * scale + shift``)."""

    objective: str = "multiclass"
    positive: int = 1
    shift: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()

    def __call__(self, label: np.ndarray) -> np.ndarray:
        if self.objective == "binary":
            return (np.asarray(label) == self.positive).astype(np.float32)
        if self.objective == "regression":
            shift = np.asarray(self.shift, np.float32)
            scale = np.asarray(self.scale, np.float32)
            return ((np.asarray(label, np.float32) - shift) / scale).astype(np.float32)
        return label

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs in the targets' own units (regression); others as they are."""
        if self.objective != "regression":
            return outputs
        return (np.asarray(outputs, np.float64) * np.asarray(self.scale) + np.asarray(self.shift)).astype(np.float32)


CLASS_INDEX = TargetTransform()


class BlockDataset(IterableDataset, ABC):
    """Seeded block-shuffled batches ``{jets, tracks, valid, label, weight}`` over blocks of selected rows.

    Subclasses list their blocks (:meth:`_select_blocks`: ``(block id, selected rows)``), give a
    block's selected local rows when it is read (:meth:`_block_rows`) and read them
    (:meth:`_read_blocks`: dicts keyed ``jets, label, weight[, tracks, valid]``); the epoch's
    shuffle, the workers' shares and the batching are common. What is kept between epochs is a
    few numbers per block, not per row.

    ``shard=(rank, size)`` keeps one process's share of every epoch (distributed training): the
    epoch's row stream (its shuffled blocks, each with its shuffled rows) is cut into ``size``
    contiguous ranges and this process reads the blocks of range ``rank`` only, so the processes
    read disjoint rows and mostly disjoint blocks (a block across a cut is read by both, each its
    own rows). With ``even_shards`` every range has ``n_rows // size`` rows, the last
    ``n_rows % size`` rows of the epoch's stream left out, so that every process makes the same
    number of batches; without, the ranges cover every row (for validation).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        with_tracks: bool,
        drop_last: bool,
        sort_by_nodes: bool,
        bucket_rows: int,
        target: TargetTransform = CLASS_INDEX,
        shard: tuple[int, int] = (0, 1),
        even_shards: bool = True,
    ) -> None:
        if batch_size < 1 or bucket_rows < 1:
            raise ValueError(f"batch_size and bucket_rows must be >= 1, got {batch_size} and {bucket_rows}")
        rank, size = (int(x) for x in shard)
        if size < 1 or not 0 <= rank < size:
            raise ValueError(f"shard must be (rank, size) with 0 <= rank < size, got {shard}")
        self.shard, self.even_shards = (rank, size), bool(even_shards)
        if sort_by_nodes and not with_tracks:
            raise ValueError("sort_by_nodes groups jets by track count: it needs with_tracks")
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.with_tracks, self.drop_last = bool(with_tracks), bool(drop_last)
        self.sort_by_nodes, self.bucket_rows = bool(sort_by_nodes), int(bucket_rows)
        self.target = target
        self.epoch = 0
        self._blocks = self._select_blocks()
        self.n_rows = int(sum(n for _, n in self._blocks))
        low, high = self._share()
        self.shard_rows = high - low

    @abstractmethod
    def _select_blocks(self) -> list[tuple[int, int]]:
        """(block id, number of selected rows) of every block holding a selected jet, in storage order."""

    @abstractmethod
    def _block_rows(self, block: int) -> np.ndarray:
        """The selected local rows of block ``block``, in storage order."""

    @abstractmethod
    def _read_blocks(self, blocks: Iterable[tuple[int, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The given rows of each block, keyed ``jets, label, weight`` (and ``tracks, valid`` with tracks)."""

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of epoch ``epoch`` (called by the Fitter before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch in this process (of its shard)."""
        full, rest = divmod(self.shard_rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _share(self) -> tuple[int, int]:
        """The range of the epoch's row stream this process reads: all of it unsharded."""
        rank, size = self.shard
        if size == 1:
            return 0, self.n_rows
        if self.even_shards:
            each = self.n_rows // size
            return rank * each, (rank + 1) * each
        each, extra = divmod(self.n_rows, size)
        low = rank * each + min(rank, extra)
        return low, low + each + (1 if rank < extra else 0)

    def _block_order(self) -> Iterator[tuple[int, np.ndarray]]:
        """This epoch's blocks with their rows, shuffled when asked, this process's and this worker's
        share of them; each block's rows are found when it comes (every block's shuffle is drawn in
        turn all the same, so the order depends on the epoch alone)."""
        blocks = list(self._blocks)
        rng = rng_for(self.seed, "train_batches", self.epoch)
        if self.shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        info = get_worker_info()
        low, high = self._share()
        start = mine = 0
        for block, n in blocks:
            order = rng.permutation(n) if self.shuffle else None
            first, stop = max(low - start, 0), min(high - start, n)
            start += n
            if first >= stop:
                continue
            if info is None or mine % info.num_workers == info.id:
                rows = self._block_rows(block)
                rows = rows if order is None else rows[order]
                yield block, rows if (first, stop) == (0, n) else rows[first:stop]
            mine += 1

    def _batch_rng(self) -> np.random.Generator | None:
        """The generator of the SortByNodes batch order: fixed by seed, epoch, worker (and the
        process's rank when sharded); None unshuffled."""
        if not self.shuffle:
            return None
        info = get_worker_info()
        worker = 0 if info is None else info.id
        rank, size = self.shard
        if size == 1:
            return rng_for(self.seed, "sort_by_nodes", self.epoch, worker)
        return rng_for(self.seed, "sort_by_nodes", self.epoch, worker, "rank", rank)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        parts = self._read_blocks(self._block_order())
        for arrays in batch_rows(parts, self.batch_size, drop_last=self.drop_last, sort_by_nodes=self.sort_by_nodes,
                                 rng=self._batch_rng(), bucket_rows=self.bucket_rows):
            yield self._to_batch(arrays)

    def _to_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        label = self.target(arrays["label"])
        label_dtype = torch.long if np.issubdtype(label.dtype, np.integer) else torch.float32
        batch = {
            "jets": torch.from_numpy(arrays["jets"].astype(np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label)).to(label_dtype),
            "weight": torch.from_numpy(arrays["weight"].astype(np.float32)),
        }
        if self.with_tracks:
            batch["tracks"] = torch.from_numpy(np.ascontiguousarray(arrays["tracks"], dtype=np.float32))
            batch["valid"] = torch.from_numpy(np.ascontiguousarray(arrays["valid"], dtype=bool))
        return batch


class TrainFileDataset(BlockDataset):
    """Iterate ``{jets, tracks, valid, label, weight}`` batches over the jets of ``folds`` of a umami train file.

    Contiguous blocks of ``block_rows`` jets are read one at a time; with ``shuffle`` the block
    order and the rows inside each block are permuted by a generator keyed by ``seed`` and the
    epoch (:meth:`set_epoch`), so an epoch's order is fixed by its number alone. With
    ``sort_by_nodes`` each bucket of ``bucket_rows`` jets is batched by track count
    (:mod:`tracerflow.training.batching`). Works as is in a ``DataLoader(dataset,
    batch_size=None, num_workers=n)``: each worker reads its own blocks.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        folds: Iterable[int] | None = None,
        *,
        batch_size: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        with_tracks: bool = True,
        label_name: str = LABEL_NAME,
        drop_last: bool = False,
        sort_by_nodes: bool = False,
        bucket_rows: int = DEFAULT_BUCKET_ROWS,
        target: TargetTransform = CLASS_INDEX,
        shard: tuple[int, int] = (0, 1),
        even_shards: bool = True,
    ) -> None:
        if block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {block_rows}")
        self.path = Path(path)
        self.folds = None if folds is None else sorted({int(k) for k in folds})
        self.block_rows, self.label_name = int(block_rows), label_name
        super().__init__(batch_size=batch_size, shuffle=shuffle, seed=seed, with_tracks=with_tracks,
                         drop_last=drop_last, sort_by_nodes=sort_by_nodes, bucket_rows=bucket_rows, target=target,
                         shard=shard, even_shards=even_shards)

    def _select_blocks(self) -> list[tuple[int, int]]:
        """(start, selected rows) of each block holding at least one jet of the folds."""
        blocks = []
        with h5py.File(self.path, "r") as f:
            fold = f[path_in(groups_of(f.attrs), "jets/fold")]
            for start in range(0, fold.shape[0], self.block_rows):
                n = len(self._selected(fold[start:start + self.block_rows]))
                if n:
                    blocks.append((start, n))
        return blocks

    def _selected(self, fold: np.ndarray) -> np.ndarray:
        """Positions of the rows of the folds among rows with fold ids ``fold``."""
        keep = np.ones(len(fold), bool) if self.folds is None else np.isin(fold, self.folds)
        return np.flatnonzero(keep).astype(np.int32)

    def _block_rows(self, block: int) -> np.ndarray:
        """The selected local rows of the block starting at row ``block`` (its fold ids read again)."""
        with h5py.File(self.path, "r") as f:
            return self._selected(f[path_in(groups_of(f.attrs), "jets/fold")][block:block + self.block_rows])

    def _names(self) -> dict[str, str]:
        names = {"jets": "jets/inputs", "label": self.label_name, "weight": "jets/weight"}
        return names | ({"tracks": "tracks/inputs", "valid": "tracks/valid"} if self.with_tracks else {})

    def _read_blocks(self, blocks: Iterable[tuple[int, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The selected rows of each contiguous block, in the order of its rows."""
        with h5py.File(self.path, "r") as f:
            groups = groups_of(f.attrs)
            datasets = {key: f[path_in(groups, name)] for key, name in self._names().items()}
            for start, rows in blocks:
                stop = start + int(rows.max()) + 1
                yield {key: dataset[start:stop][rows] for key, dataset in datasets.items()}


class Loader:
    """A block dataset read by ``workers`` DataLoader processes, still epoch-seeded and sized.

    Each worker reads its own share of the epoch's blocks (``blocks[worker::workers]``) and the
    DataLoader takes their batches in turn, so the batch order depends on the epoch and the worker
    count only. ``workers=0`` reads in the calling process.
    """

    def __init__(self, dataset: BlockDataset, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.dataset, self.workers = dataset, int(workers)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of epoch ``epoch``; workers started after this call see it."""
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.workers:
            return iter(self.dataset)
        return iter(DataLoader(self.dataset, batch_size=None, num_workers=self.workers))
