"""The predictions HDF5 layout: per-jet class probabilities of the fold models or their ensemble.

``/index/{hash, fold}`` per jet; ``/pred`` (``(n, k)`` float32, the ``names`` attribute lists the
classes); ``/label`` (class index, -1 when unknown); ``/fold`` (the fold whose model predicted
the jet out of fold, -1 for an ensemble on new data); ``/weight``. Root attributes add ``kind``
(``out_of_fold`` or ``ensemble``), ``split``, ``class_names`` and ``n_rows``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.io.h5target import H5Writer, check_schema

SCHEMA = "tracerflow.predictions"
SCHEMA_VERSION = 1
KINDS = ("out_of_fold", "ensemble")


def write_predictions(path: str | os.PathLike, *, hash: np.ndarray, pred: np.ndarray, label: np.ndarray,
                      fold: np.ndarray, weight: np.ndarray, class_names: Sequence[str], kind: str, split: str,
                      config_digest: str, created_by: str, attrs: Mapping[str, Any] | None = None) -> None:
    """Write one predictions file atomically, checking that every column has one row per jet."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 2 or pred.shape[1] != len(class_names):
        raise ValueError(f"pred has shape {pred.shape}, expected (n, {len(class_names)})")
    n = len(pred)
    columns = {"hash": np.asarray(hash, dtype=np.uint64), "label": np.asarray(label, dtype=np.int16),
               "fold": np.asarray(fold, dtype=np.int16), "weight": np.asarray(weight, dtype=np.float32)}
    for name, column in columns.items():
        if column.shape != (n,):
            raise ValueError(f"{name} has shape {column.shape}, expected ({n},)")
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, "gzip",
                  attrs={"kind": kind, "split": split, "class_names": list(class_names), "n_rows": n,
                         **dict(attrs or {})}) as writer:
        writer.append("index/hash", columns["hash"])
        writer.append("index/fold", columns["fold"])
        writer.append("pred", pred)
        writer.set_attrs("pred", names=list(class_names))
        writer.append("label", columns["label"])
        writer.append("fold", columns["fold"])
        writer.append("weight", columns["weight"])


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """Read a predictions file: its columns, ``class_names``, ``kind``, ``split`` and root ``attrs``."""
    with h5py.File(path, "r") as f:
        check_schema(f, SCHEMA, SCHEMA_VERSION)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        return {
            "hash": f["index/hash"][:],
            "fold": f["fold"][:],
            "pred": f["pred"][:],
            "label": f["label"][:],
            "weight": f["weight"][:],
            "class_names": json.loads(f["pred"].attrs["names"]),
            "kind": str(attrs["kind"]),
            "split": str(attrs["split"]),
            "attrs": attrs,
        }
