"""Chunk-aligned appends through :class:`H5Writer`, and timestamp-free groups and text datasets.

Datasets are created with row-chunks of about 2 MiB (a few thousand jets for per-track
arrays) and rows are buffered until whole chunks can be written, so HDF5 never reads back and
recompresses a partly written chunk: every write but the last covers complete chunks.
:class:`WriteBehind` writes one batch of rows on a second thread while the caller prepares the
next: h5py lets go of the GIL while HDF5 copies the data into the file.
"""
from __future__ import annotations

from typing import Any, Mapping

import h5py
import numpy as np

from tracerflow.io.h5target import GZIP_LEVEL, H5Writer
from tracerflow.write.workers import WriteQueue

TARGET_CHUNK_BYTES = 2 << 20
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 32768


def chunk_rows_for(row_bytes: int) -> int:
    """Rows per HDF5 chunk for rows of ``row_bytes``: the power of two that keeps a chunk within
    ~2 MiB, between 256 and 32768. Powers of two divide one another, so blocks of a power-of-two
    number of jets fill whole chunks of every dataset and nothing has to be joined before writing."""
    rows = TARGET_CHUNK_BYTES // max(int(row_bytes), 1)
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, 1 << max(0, rows.bit_length() - 1))))


def ensure_group(f: h5py.File, path: str) -> None:
    """Create ``path`` and its parents as groups without modification times (reproducible bytes)."""
    parts = [p for p in path.strip("/").split("/") if p]
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth])
        if name not in f:
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            h5py.h5g.create(f.id, name.encode("utf-8"), gcpl=gcpl)


def write_text(w: H5Writer, name: str, text: str) -> None:
    """Store ``text`` as a scalar UTF-8 string dataset (how LUMIN keeps its JSON metadata)."""
    assert w.file is not None, "H5Writer used outside its context"
    parent = name.rsplit("/", 1)[0] if "/" in name else ""
    if parent:
        ensure_group(w.file, parent)
    w.file.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"), track_times=False)


def read_text(f: h5py.Group, name: str) -> str:
    """Read a scalar string dataset written by :func:`write_text` (or by LUMIN) as ``str``."""
    value = f[name][()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RowAppender:
    """Append rows to datasets of an open :class:`H5Writer`, writing whole chunks only."""

    def __init__(self, writer: H5Writer) -> None:
        assert writer.file is not None, "H5Writer used outside its context"
        self.writer = writer
        self._rows: dict[str, int] = {}
        self._pending: dict[str, list[np.ndarray]] = {}
        self._count: dict[str, int] = {}
        self._datasets: dict[str, h5py.Dataset] = {}
        self._written: dict[str, int] = {}

    def create(self, name: str, dtype: Any, shape_tail: tuple[int, ...] = (), expected_rows: int = 0,
               **attrs: Any) -> None:
        """Create ``name`` resizable with row-chunks sized for its rows.

        With ``expected_rows`` the dataset starts that long, so appends write without growing it
        (growing an HDF5 dataset at every append costs as much again as the write); :meth:`flush`
        trims it to the rows actually added."""
        f = self.writer.file
        dtype = np.dtype(dtype)
        tail = tuple(int(d) for d in shape_tail)
        rows = chunk_rows_for(dtype.itemsize * int(np.prod(tail, dtype=np.int64)))
        compression = self.writer.compression
        if "/" in name:
            ensure_group(f, name.rsplit("/", 1)[0])
        self._datasets[name] = f.create_dataset(
            name,
            shape=(int(expected_rows),) + tail,
            dtype=dtype,
            maxshape=(None,) + tuple(d if d else None for d in tail),
            chunks=(rows,) + tuple(max(d, 1) for d in tail),
            compression=compression,
            compression_opts=GZIP_LEVEL if compression == "gzip" else None,
            shuffle=compression is not None and dtype.itemsize > 1,
            track_times=False,
        )
        if attrs:
            self.writer.set_attrs(name, **attrs)
        self._rows[name] = rows
        self._pending[name] = []
        self._count[name] = 0
        self._written[name] = 0

    def add(self, name: str, data: np.ndarray) -> None:
        """Queue rows for ``name``; complete chunks go to the file at once.

        Rows that complete an open chunk are joined to it (one chunk's worth of copying); whole
        chunks of ``data`` are written straight from it; the rest waits for the next call.
        """
        dset = self._datasets[name]
        data = np.asarray(data, dtype=dset.dtype)
        if data.shape[1:] != dset.shape[1:]:
            raise ValueError(f"{name}: adding rows of shape {data.shape[1:]} to {dset.shape[1:]}")
        if not len(data):
            return
        rows = self._rows[name]
        if self._count[name]:
            need = rows - self._count[name]
            self._pending[name].append(data[:need])
            self._count[name] += min(need, len(data))
            if self._count[name] < rows:
                return
            self._write(name, np.concatenate(self._pending[name]))
            self._pending[name], self._count[name] = [], 0
            data = data[need:]
        full = len(data) // rows * rows
        if full:
            self._write(name, data[:full])
        if len(data) > full:
            self._pending[name] = [data[full:]]
            self._count[name] = len(data) - full

    def _write(self, name: str, data: np.ndarray) -> None:
        """Grow ``name`` by ``data``'s rows and write them (the dataset handle is kept, not looked up)."""
        dset = self._datasets[name]
        start = self._written[name]
        stop = start + len(data)
        if stop > dset.shape[0]:
            dset.resize(stop, axis=0)
        dset[start:stop] = data
        self._written[name] = stop
        self.writer.check()

    def flush(self) -> None:
        """Write every queued row (the last, partial chunk of each dataset)."""
        for name, pending in self._pending.items():
            if pending:
                self._write(name, np.concatenate(pending))
            self._pending[name] = []
            self._count[name] = 0
            if self._datasets[name].shape[0] != self._written[name]:
                self._datasets[name].resize(self._written[name], axis=0)

    def rows_written(self, name: str) -> int:
        """Rows of ``name`` added so far, queued or written."""
        return self._written[name] + self._count[name]


class WriteBehind(WriteQueue):
    """Add each batch of rows to a :class:`RowAppender` on one writer thread; use as a context manager.

    At most one batch is being written while the caller computes the next, so memory holds two
    batches. Rows reach the file in the order of :meth:`add` calls; a failed write is raised by
    the next :meth:`add` or on leaving the block.
    """

    def __init__(self, rows: RowAppender) -> None:
        super().__init__(max_pending=1)
        self.rows = rows

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Queue ``{dataset: rows}`` once the previous batch is written."""
        self.submit(self._write, dict(batch))

    def _write(self, batch: Mapping[str, np.ndarray]) -> None:
        for name, data in batch.items():
            self.rows.add(name, data)
