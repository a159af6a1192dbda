"""The resampled-split HDF5 layout: the jets of one split, with their tracks, in final order.

Per output row (rows are already globally shuffled):

- ``/index/{source, row, hash, item, copy, entry}``: ``source`` is the position in the
  ``sources`` attribute (a JSON list of ``[sample, file]``), ``row`` the row in that source's
  selections file, ``item`` the row's position within its event, ``copy`` 0 for a jet's first
  copy, ``entry`` the event's entry in the source's ROOT tree (gathered from the selections file);
- ``/label`` (class index; the ``classes`` attribute names them) and ``/weight``;
- ``/jets/<name>``: every selection output (``derived/<name>`` of the selections file);
- ``/nodes/counts``: graph nodes (tracks) of the row's jet; ``/nodes/x`` and ``/nodes/truth``:
  the node features and node truth of all rows back to back, names in their ``names``
  attribute (JSON list), as in the graphs file (no ``/nodes`` group in an analysis without graphs);
- ``/nodes/x_half_counts`` (float16 node features only): ``(n_features, 65536)`` counts of each
  float16 bit pattern per feature over every node of the split, from which WriteTrainSample
  takes the tracks' means and standard deviations without reading the nodes again.

A resampled file is self-contained: WriteTrainSample reads it front to back and never goes
back to the selections and graphs files. Its datasets are contiguous, so they are read through
read-only views of the mapped file rather than copied (:mod:`tracerflow.io.contiguous_views`).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from tracerflow.io.contiguous_views import ContiguousViews
from tracerflow.io.h5target import SchemaFile

SCHEMA = "tracerflow.resampled"
SCHEMA_VERSION = 3
INDEX_COLUMNS = ("source", "row", "hash", "item", "copy")
#: Index columns gathered from the selections files rather than given with the rows.
GATHERED_INDEX = ("entry",)
INDEX_DTYPES = {"source": np.uint32, "row": np.int64, "hash": np.uint64, "item": np.int32, "copy": np.int32}
LABEL_DTYPE = np.int16
WEIGHT_DTYPE = np.float32
COUNT_DTYPE = np.uint32
#: Rows per entry of the table of node offsets a reader keeps (8 bytes per block, not per row).
OFFSET_BLOCK = 1 << 16


class ResampledFile(SchemaFile):
    """Read a resampled split: names, index columns and row ranges of jets and their nodes."""

    SCHEMA, SCHEMA_VERSION = SCHEMA, SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        self._views = ContiguousViews(self._file, self.path)
        self.has_nodes = "nodes" in self._file
        self._n_rows = int(self._file["label"].shape[0])
        self._block_nodes = self._node_block_starts()
        self.node_features: list[str] = self._json_attr("nodes/x", "names") if self.has_nodes else []
        self.node_truth: list[str] = self._json_attr("nodes/truth", "names") if self.has_nodes else []

    def __len__(self) -> int:
        return self._n_rows

    def close(self) -> None:
        self._views.close()
        super().close()

    def release(self) -> None:
        """Let go of the pages of the file read so far (:meth:`ContiguousViews.release`): a reader going
        front to back calls this between blocks, so resident memory holds a block, not the file."""
        self._views.release()

    def _node_block_starts(self) -> np.ndarray:
        """The first node of every ``OFFSET_BLOCK``-th row (and the node count at the end), summed
        a block at a time: what :meth:`node_offsets` starts from, a few bytes per block of rows."""
        starts = np.zeros(-(-self._n_rows // OFFSET_BLOCK) + 1, np.int64)
        for block, lo in enumerate(range(0, self._n_rows, OFFSET_BLOCK)):
            starts[block + 1] = starts[block] + int(self.node_counts(lo, lo + OFFSET_BLOCK).sum())
        self.release()
        return starts

    def node_counts(self, start: int, stop: int) -> np.ndarray:
        """Graph nodes of each of rows ``[start, stop)`` (int64; zeros in a file without nodes)."""
        if not self.has_nodes:
            return np.zeros(max(0, min(stop, self._n_rows) - start), np.int64)
        return self._rows("nodes/counts", start, stop).astype(np.int64)

    def node_offsets(self, start: int, stop: int) -> np.ndarray:
        """Where the nodes of rows ``start .. stop`` begin in ``nodes/x`` (``stop - start + 1`` values,
        the last one the end of row ``stop - 1``'s nodes)."""
        block = start // OFFSET_BLOCK
        first = self._block_nodes[block] + int(self.node_counts(block * OFFSET_BLOCK, start).sum())
        return first + np.concatenate([[0], np.cumsum(self.node_counts(start, stop))])

    def _rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of dataset ``name``: a read-only view into the mapped file when the
        dataset is stored contiguously (as :func:`~tracerflow.resample.gather.write_resampled`
        writes it), read through h5py otherwise."""
        view = self._views.get(name)
        return view[start:stop] if view is not None else self._file[name][start:stop]

    def _json_attr(self, obj: str, name: str) -> list:
        return json.loads(self._file[obj].attrs[name] if obj != "/" else self._file.attrs[name])

    @property
    def split(self) -> str:
        return str(self._file.attrs["split"])

    @property
    def classes(self) -> list[str]:
        return self._json_attr("/", "classes")

    @property
    def sources(self) -> list[tuple[str, str]]:
        return [tuple(s) for s in self._json_attr("/", "sources")]

    @property
    def jet_names(self) -> list[str]:
        return sorted(self._file["jets"].keys())

    def _node_columns(self, which: str, names: Sequence[str]) -> list[int]:
        """Column of each of ``names`` in ``nodes/x`` (``which="x"``) or ``nodes/truth``; a ``KeyError``
        names a missing one."""
        known = self.node_features if which == "x" else self.node_truth
        missing = [v for v in names if v not in known]
        if missing:
            kind = "node feature" if which == "x" else "node truth"
            raise KeyError(f"{self.path}: no {kind} {missing[0]!r} (has {known})")
        return [known.index(v) for v in names]

    def half_counts(self, names: Sequence[str]) -> np.ndarray | None:
        """``(len(names), 65536)`` float16 bit-pattern counts of node features ``names`` over every
        node, or None when the file has none (node features not float16)."""
        if "nodes/x_half_counts" not in self._file:
            return None
        return self._rows("nodes/x_half_counts")[self._node_columns("x", names)]

    def index(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Column ``name`` (an index column, ``entry``, ``label`` or ``weight``) of rows ``[start, stop)``."""
        return self._rows(f"index/{name}" if name in (*INDEX_COLUMNS, *GATHERED_INDEX) else name, start, stop)

    def jets(self, names: Sequence[str], start: int, stop: int) -> dict[str, np.ndarray]:
        """Selection outputs ``names`` of rows ``[start, stop)``; a ``KeyError`` names a missing one."""
        missing = [v for v in names if f"jets/{v}" not in self._file]
        if missing:
            raise KeyError(f"{self.path}: no selection output {missing[0]!r} (has {self.jet_names})")
        return {v: self._rows(f"jets/{v}", start, stop) for v in names}

    def nodes(self, which: str, names: Sequence[str], start: int, stop: int) -> np.ndarray:
        """Columns ``names`` of ``nodes/x`` (``which="x"``) or ``nodes/truth`` for the nodes of rows
        ``[start, stop)``, as ``(n_nodes, len(names))``; nothing is read when ``names`` is empty."""
        idx = self._node_columns(which, names)
        bounds = self.node_offsets(start, stop)
        n0, n1 = int(bounds[0]), int(bounds[-1])
        if not idx:
            return np.zeros((n1 - n0, 0), dtype=self._file[f"nodes/{which}"].dtype if self.has_nodes else np.float32)
        dset = self._file[f"nodes/{which}"]
        block = self._rows(f"nodes/{which}", n0, n1)
        return block if idx == list(range(dset.shape[1])) else block[:, idx]
