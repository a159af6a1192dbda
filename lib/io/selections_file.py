"""The selections HDF5 layout: ``/index`` of passing rows, ``/cutflow``, ``/derived``.

``/index/{hash, sample, file, entry, item, row}`` for every passing row of the selection
level (``row``: its row at that level in the events file, to join graphs of the same level);
``/cutflow/{name, passed, weighted}``; ``/derived/<output>`` aligned with the index;
``/weights/generator``: each row's event's generator weight (1 without ``event.generator_weight``).
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from tracerflow.io.h5target import check_schema

SCHEMA = "tracerflow.selections"
SCHEMA_VERSION = 1
INDEX_COLUMNS = ("hash", "sample", "file", "entry", "item", "row")
#: The events file's field holding the generator weight, and where selections store it per row.
GENERATOR_WEIGHT = "generator_weight"
GENERATOR_WEIGHT_PATH = "weights/generator"


def read_cutflow(path: str | os.PathLike) -> list[tuple[str, int, float]]:
    """The cutflow of a selections target as (name, passed, weighted) rows."""
    with h5py.File(path, "r") as f:
        check_schema(f, SCHEMA, SCHEMA_VERSION)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["cutflow/name"][:]]
        return list(zip(names, f["cutflow/passed"][:].tolist(), f["cutflow/weighted"][:].tolist()))


def read_selection(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Index columns and derived outputs of the passing rows, keyed by their path."""
    with h5py.File(Path(path), "r") as f:
        check_schema(f, SCHEMA, SCHEMA_VERSION)
        out = {f"index/{c}": f[f"index/{c}"][:] for c in INDEX_COLUMNS}
        for name in f["derived"]:
            out[f"derived/{name}"] = f[f"derived/{name}"][:]
        return out
