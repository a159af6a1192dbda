"""Chunk-aligned appends through :class:`H5Writer`, and timestamp-free groups and text datasets.

Datasets are created with row-chunks of about 2 MiB (a few thousand jets for per-track
arrays) and rows are buffered until whole chunks can be written, so HDF5 never reads back and
recompresses a partly written chunk: every write but the last covers complete chunks.
"""
from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from tracerflow.io.h5target import GZIP_LEVEL, H5Writer

TARGET_CHUNK_BYTES = 2 << 20
MIN_CHUNK_ROWS = 256
MAX_CHUNK_ROWS = 32768


def chunk_rows_for(row_bytes: int) -> int:
    """Rows per HDF5 chunk for rows of ``row_bytes``: ~2 MiB, a multiple of 256, at most 32768."""
    rows = TARGET_CHUNK_BYTES // max(int(row_bytes), 1)
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows // 256 * 256)))


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

    def create(self, name: str, dtype: Any, shape_tail: tuple[int, ...] = (), **attrs: Any) -> None:
        """Create ``name`` empty and resizable with row-chunks sized for its rows."""
        f = self.writer.file
        dtype = np.dtype(dtype)
        tail = tuple(int(d) for d in shape_tail)
        rows = chunk_rows_for(dtype.itemsize * int(np.prod(tail, dtype=np.int64)))
        compression = self.writer.compression
        if "/" in name:
            ensure_group(f, name.rsplit("/", 1)[0])
        f.create_dataset(
            name,
            shape=(0,) + tail,
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

    def add(self, name: str, data: np.ndarray) -> None:
        """Queue rows for ``name``; complete chunks go to the file at once."""
        dset = self.writer.file[name]
        data = np.asarray(data, dtype=dset.dtype)
        if data.shape[1:] != dset.shape[1:]:
            raise ValueError(f"{name}: adding rows of shape {data.shape[1:]} to {dset.shape[1:]}")
        if not len(data):
            return
        self._pending[name].append(data)
        self._count[name] += len(data)
        rows = self._rows[name]
        if self._count[name] >= rows:
            block = np.concatenate(self._pending[name]) if len(self._pending[name]) > 1 else data
            full = len(block) // rows * rows
            self.writer.append(name, block[:full])
            rest = block[full:]
            self._pending[name] = [rest.copy()] if len(rest) else []
            self._count[name] = len(rest)

    def flush(self) -> None:
        """Write every queued row (the last, partial chunk of each dataset)."""
        for name, pending in self._pending.items():
            if pending:
                self.writer.append(name, np.concatenate(pending))
            self._pending[name] = []
            self._count[name] = 0

    def rows_written(self, name: str) -> int:
        """Rows of ``name`` added so far, queued or written."""
        return int(self.writer.file[name].shape[0]) + self._count[name]
