"""Zero-copy read views of the contiguous, uncompressed datasets of an HDF5 file.

Such a dataset is one byte range of the file at an offset HDF5 reports (``H5Dget_offset``).
Mapping the file read-only turns each into a numpy array over the file's page cache: slicing
it reads nothing until the values are used, and nothing is copied into fresh memory, which is
most of the cost of reading a large file through h5py. Chunked or filtered datasets have no
such view and are read through h5py as usual. Views are read-only.

Pages of a mapped file that have been read count in the process's resident memory for as long as
they stay mapped, so a reader that goes front to back through a large file calls :meth:`release`
between its blocks: the pages leave the process (the kernel keeps them in its page cache, and a
view touched again reads them back), and resident memory stays at one block, not the file.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import h5py
import numpy as np


class ContiguousViews:
    """Read-only arrays over the contiguous datasets of the open file ``f``; use as a context manager."""

    def __init__(self, f: h5py.File, path: str | os.PathLike) -> None:
        self._file = f
        self._views: dict[str, np.ndarray | None] = {}
        self._map = _map_read_only(Path(path))

    def __enter__(self) -> "ContiguousViews":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, name: str) -> np.ndarray | None:
        """The whole dataset ``name`` as a read-only array over the mapped file, or None when it
        is chunked, filtered, empty or not a plain numeric type (read it through h5py then)."""
        if name not in self._views:
            self._views[name] = self._view(self._file[name])
        return self._views[name]

    def _view(self, dset: h5py.Dataset) -> np.ndarray | None:
        if (self._map is None or dset.chunks is not None or dset.dtype.kind not in "biuf" or not dset.size
                or not dset.dtype.isnative):
            return None
        offset = dset.id.get_offset()
        if offset is None or offset + dset.size * dset.dtype.itemsize > len(self._map):
            return None
        return np.ndarray(dset.shape, dset.dtype, buffer=self._map, offset=offset)

    def release(self) -> bool:
        """Drop every page of the mapping from this process's resident memory; views stay valid (their
        pages are read again when used). False where the mapping cannot be advised (nothing dropped)."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return False
        try:
            self._map.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            return False
        return True

    def close(self) -> None:
        """Forget the views and the mapping. The file is unmapped when the last array over it goes:
        numpy keeps the mapping object alive but holds no buffer export that would stop an explicit
        ``close``, so closing it here would leave arrays still in use pointing at unmapped memory."""
        self._views = {}
        self._map = None


def _map_read_only(path: Path) -> mmap.mmap | None:
    """``path`` mapped read-only, or None for an empty file or a file system that cannot map
    files (every dataset is then read through h5py)."""
    size = path.stat().st_size
    if not size:
        return None
    with open(path, "rb") as handle:
        try:
            return mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
        except OSError:
            return None
