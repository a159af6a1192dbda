"""The resampled-split HDF5 layout: which selected jets a split holds, in final order.

``/index/{source, row, hash, item, copy}`` per output row (``source``: position in the
``sources`` attribute, a JSON list of ``[sample, file]``; ``row``: row in that source's
selections file; ``copy``: 0 for a jet's first copy); ``/label`` (class index, the
``classes`` attribute names them) and ``/weight``. Rows are already globally shuffled.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.io.h5target import H5Writer, check_schema

SCHEMA = "tracerflow.resampled"
SCHEMA_VERSION = 1
INDEX_COLUMNS = ("source", "row", "hash", "item", "copy")
_DTYPES = {"source": np.uint32, "row": np.int64, "hash": np.uint64, "item": np.int32, "copy": np.int32}


def write_resampled(path: str | os.PathLike, rows: Mapping[str, np.ndarray], *, split: str,
                    classes: Sequence[str], sources: Sequence[tuple[str, str]], config_digest: str,
                    created_by: str, attrs: Mapping[str, Any] | None = None) -> None:
    """Write one split's output rows (``source``, ``row``, ``hash``, ``item``, ``copy``, ``label``, ``weight``)."""
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, "gzip",
                  attrs={"split": split, "classes": list(classes), "sources": [list(s) for s in sources],
                         "n_rows": int(len(rows["row"])), **dict(attrs or {})}) as writer:
        for name in INDEX_COLUMNS:
            writer.append(f"index/{name}", np.asarray(rows[name], dtype=_DTYPES[name]))
        writer.append("label", np.asarray(rows["label"], dtype=np.int16))
        writer.append("weight", np.asarray(rows["weight"], dtype=np.float32))


class ResampledFile:
    """Read a resampled split: its rows, class names and source list."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with h5py.File(self.path, "r") as f:
            check_schema(f, SCHEMA, SCHEMA_VERSION)
            self.split = str(f.attrs["split"])
            self.classes: list[str] = json.loads(f.attrs["classes"])
            self.sources: list[tuple[str, str]] = [tuple(s) for s in json.loads(f.attrs["sources"])]
            self.rows = {name: f[f"index/{name}"][:] for name in INDEX_COLUMNS}
            self.rows["label"] = f["label"][:]
            self.rows["weight"] = f["weight"][:]

    def __len__(self) -> int:
        return len(self.rows["row"])
