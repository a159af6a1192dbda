"""Uncompressed HDF5 datasets of a known length, written at their byte offsets by several threads.

h5py appends a block of rows through HDF5's chunk machinery on one thread at a time. A dataset
stored contiguously, its space allocated when it is created and never filled by HDF5, is
instead one byte range of the file at an offset HDF5 reports (``H5Dget_offset``, there for
tools that read raw data directly). Rows ``[start, stop)`` of it are then one ``pwrite`` at
``offset + start * row_bytes``: any thread can store any block, in any order, with the GIL
released, straight from the small buffers its rows were computed in. The file stays a plain
HDF5 file. The byte ranges are reserved with ``posix_fallocate`` first, so a full disk is an
``OSError`` before any row is written; a write that fails anyway (a file system that cannot
reserve, an I/O error) is an ``OSError`` too, never a crash, and the compiled loops that store
rows hand a failed store back to :meth:`PlacedDatasets.write` to raise it.
"""
from __future__ import annotations

import ctypes
import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from tracerflow.io.h5target import H5Writer
from tracerflow.write.appender import ensure_group


class StoreMutex:
    """A POSIX mutex that every store into one file takes: threads waiting for the file sleep.

    The kernel lets one buffered write into a file run at a time; a thread that arrives while
    another writes spins on the file's lock for as long as the writer runs, on a core the other
    threads need. Taking turns on this mutex first puts the waiting thread to sleep instead.
    Compiled loops take it by :attr:`address`, Python code through :meth:`held`.
    """

    _BYTES = 128  # more than any C library's pthread_mutex_t

    def __init__(self) -> None:
        self._memory = np.zeros(self._BYTES, dtype=np.uint8)
        self._libc = ctypes.CDLL(None)
        error = self._libc.pthread_mutex_init(ctypes.c_void_p(self.address), None)
        if error:
            raise OSError(error, f"pthread_mutex_init: {os.strerror(error)}")

    @property
    def address(self) -> int:
        """Where the mutex lives, for compiled code."""
        return int(self._memory.ctypes.data)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the mutex for the block (waiting without the GIL)."""
        self._libc.pthread_mutex_lock(ctypes.c_void_p(self.address))
        try:
            yield
        finally:
            self._libc.pthread_mutex_unlock(ctypes.c_void_p(self.address))


@dataclass(frozen=True)
class _Layout:
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int | None
    row_bytes: int

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes


class PlacedDatasets:
    """Datasets of ``n_rows`` rows in the open file of ``writer``, written row block by row block.

    :meth:`create` every dataset first, then enter the context and :meth:`write` blocks of rows
    (from any thread) until it is left. Rows nobody writes read as zeros.
    """

    def __init__(self, writer: H5Writer, n_rows: int) -> None:
        assert writer.file is not None, "H5Writer used outside its context"
        self.writer = writer
        self.n_rows = int(n_rows)
        self._layouts: dict[str, _Layout] = {}
        self._fd: int | None = None
        self.mutex = StoreMutex()

    def create(self, name: str, dtype: Any, shape_tail: tuple[int, ...] = (), **attrs: Any) -> None:
        """Create ``name`` contiguous, ``(n_rows,) + shape_tail`` of ``dtype``, its space allocated now."""
        assert self._fd is None, "create every dataset before writing rows"
        f = self.writer.file
        dtype = np.dtype(dtype)
        shape = (self.n_rows,) + tuple(int(d) for d in shape_tail)
        if "/" in name:
            ensure_group(f, name.rsplit("/", 1)[0])
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dset = f.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl, fill_time="never", track_times=False)
        if attrs:
            self.writer.set_attrs(name, **attrs)
        layout = _Layout(dtype, shape, dset.id.get_offset(), int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
        if layout.nbytes and layout.offset is None:
            raise RuntimeError(f"HDF5 allocated no contiguous storage for {name} in {self.writer.tmp_path}")
        self._layouts[name] = layout

    def __enter__(self) -> "PlacedDatasets":
        self.writer.file.flush()
        self.writer.check()
        self._fd = os.open(self.writer.tmp_path, os.O_WRONLY)
        try:
            for layout in self._layouts.values():
                if layout.nbytes:
                    reserve(self._fd, layout.offset, layout.nbytes)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def fd(self) -> int:
        """The descriptor writes go through, for compiled loops that store rows themselves."""
        assert self._fd is not None, "PlacedDatasets.fd used outside its context"
        return self._fd

    def position(self, name: str, row: int) -> int:
        """Where row ``row`` of dataset ``name`` starts in the file (0 for a dataset of no bytes,
        which has no storage and is never written)."""
        layout = self._layouts[name]
        if not 0 <= row <= self.n_rows:
            raise ValueError(f"{name}: row {row} outside [0, {self.n_rows}]")
        return (layout.offset or 0) + row * layout.row_bytes

    def write(self, start: int, rows: Mapping[str, np.ndarray]) -> None:
        """Store ``rows[name]`` (C-contiguous, of the dataset's dtype and row shape) as rows
        ``start, start + 1, ...`` of each dataset ``name``; safe to call from several threads
        (they take turns on :attr:`mutex`)."""
        assert self._fd is not None, "PlacedDatasets.write used outside its context"
        for name, data in rows.items():
            layout = self._layouts[name]
            if data.dtype != layout.dtype or data.shape[1:] != layout.shape[1:] or not data.flags.c_contiguous:
                raise ValueError(f"{name}: rows are {data.shape} {data.dtype}, "
                                 f"the dataset {layout.shape} {layout.dtype}")
            if start < 0 or start + len(data) > self.n_rows:
                raise ValueError(f"{name}: rows [{start}, {start + len(data)}) outside [0, {self.n_rows})")
            if not data.nbytes:
                continue
            view = memoryview(data.reshape(-1).view(np.uint8))
            position = layout.offset + start * layout.row_bytes
            with self.mutex.held():
                write_all(self._fd, view, position)


def write_all(fd: int, data: memoryview, position: int) -> None:
    """Write all of ``data`` at ``position``, as often as ``pwrite`` takes part of it; an error
    (a full disk, say) is an ``OSError``, and so is a write that makes no progress."""
    while data:
        written = os.pwrite(fd, data, position)
        if written <= 0:
            raise OSError(errno.EIO, f"pwrite of {len(data)} bytes at {position} wrote nothing")
        data, position = data[written:], position + written


def reserve(fd: int, offset: int, nbytes: int, *, zeros: bool = False) -> None:
    """Reserve ``nbytes`` of disk at ``offset`` so that a full disk fails now, as an ``OSError``.
    A file system that cannot reserve space (``EOPNOTSUPP``, ``EINVAL``) is left to fail at the
    write instead, or, with ``zeros``, gets the range written with zeros now: a region that will
    be written through a memory map must be, since a store into a mapped page the disk has no
    room for kills the process (``SIGBUS``) rather than raising."""
    try:
        os.posix_fallocate(fd, offset, nbytes)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        if zeros:
            block = memoryview(bytes(min(nbytes, 1 << 22)))
            for start in range(offset, offset + nbytes, len(block)):
                write_all(fd, block[:offset + nbytes - start], start)
