"""Batches of a umami train file restricted to some folds, read block by block so memory stays bounded."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tracerflow.seeding import rng_for

DEFAULT_BLOCK_ROWS = 4096
LABEL_NAME = "jets/labels"


class TrainFileDataset(IterableDataset):
    """Iterate ``{jets, tracks, valid, label, weight}`` batches over the jets of ``folds``.

    Contiguous blocks of ``block_rows`` jets are read one at a time; with ``shuffle`` the block
    order and the rows inside each block are permuted by a generator keyed by ``seed`` and the
    epoch (:meth:`set_epoch`), so an epoch's order is fixed by its number alone. Works as is in
    a ``DataLoader(dataset, batch_size=None, num_workers=n)``: each worker reads its own blocks.
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
    ) -> None:
        if batch_size < 1 or block_rows < 1:
            raise ValueError(f"batch_size and block_rows must be >= 1, got {batch_size} and {block_rows}")
        self.path = Path(path)
        self.folds = None if folds is None else sorted({int(k) for k in folds})
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.block_rows, self.with_tracks, self.drop_last = int(block_rows), bool(with_tracks), bool(drop_last)
        self.label_name = label_name
        self.epoch = 0
        self._blocks = self._select_blocks()
        self.n_rows = int(sum(len(rows) for _, rows in self._blocks))

    def _select_blocks(self) -> list[tuple[int, np.ndarray]]:
        """(start, selected local rows) of each block holding at least one jet of the folds."""
        blocks = []
        with h5py.File(self.path, "r") as f:
            fold = f["jets/fold"]
            for start in range(0, fold.shape[0], self.block_rows):
                values = fold[start:start + self.block_rows]
                keep = np.ones(len(values), bool) if self.folds is None else np.isin(values, self.folds)
                rows = np.flatnonzero(keep).astype(np.int32)
                if len(rows):
                    blocks.append((start, rows))
        return blocks

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of epoch ``epoch`` (called by the Fitter before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch in a single process."""
        full, rest = divmod(self.n_rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _block_order(self) -> list[tuple[int, np.ndarray]]:
        """This epoch's blocks, shuffled when asked, then this worker's share of them."""
        blocks = list(self._blocks)
        rng = rng_for(self.seed, "train_batches", self.epoch)
        if self.shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
            blocks = [(start, rows[rng.permutation(len(rows))]) for start, rows in blocks]
        info = get_worker_info()
        if info is not None:
            blocks = blocks[info.id::info.num_workers]
        return blocks

    def _names(self) -> list[str]:
        names = ["jets/inputs", self.label_name, "jets/weight"]
        return names + (["tracks/inputs", "tracks/valid"] if self.with_tracks else [])

    def _read_block(self, f: h5py.File, start: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The selected rows of one contiguous block, in the order of ``rows``."""
        stop = start + int(rows.max()) + 1
        return {name: f[name][start:stop][rows] for name in self._names()}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pending: list[dict[str, np.ndarray]] = []
        n_pending = 0
        with h5py.File(self.path, "r") as f:
            for start, rows in self._block_order():
                pending.append(self._read_block(f, start, rows))
                n_pending += len(rows)
                if n_pending < self.batch_size:
                    continue
                joined = _concat(pending)
                n_full = (n_pending // self.batch_size) * self.batch_size
                for lo in range(0, n_full, self.batch_size):
                    yield self._to_batch({k: v[lo:lo + self.batch_size] for k, v in joined.items()})
                pending = [{k: v[n_full:] for k, v in joined.items()}]
                n_pending -= n_full
        if n_pending and not self.drop_last:
            yield self._to_batch(_concat(pending))

    def _to_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        label = arrays[self.label_name]
        label_dtype = torch.long if np.issubdtype(label.dtype, np.integer) else torch.float32
        batch = {
            "jets": torch.from_numpy(arrays["jets/inputs"].astype(np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label)).to(label_dtype),
            "weight": torch.from_numpy(arrays["jets/weight"].astype(np.float32)),
        }
        if self.with_tracks:
            batch["tracks"] = torch.from_numpy(arrays["tracks/inputs"].astype(np.float32))
            batch["valid"] = torch.from_numpy(np.ascontiguousarray(arrays["tracks/valid"], dtype=bool))
        return batch


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join block pieces along the jet axis (no copy for a single piece)."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
