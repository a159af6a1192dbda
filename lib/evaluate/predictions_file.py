"""The predictions HDF5 layout: per-row outputs of the fold models or of their ensemble.

``/index/{hash, fold}`` per row and, where the train file says where its rows come from,
``/index/{sample, file, entry, item}``: the sample and its logical file (uint16 codes whose names
are the ``labels`` attribute, JSON, as in the events layout), the entry in that file's tree and the
row's position within its event, so every prediction joins back to its ROOT entry; ``/fold`` (the fold whose model predicted the row out of fold,
-1 for an ensemble on new data); ``/weight``; and, by objective (root attribute ``objective``):

- ``multiclass`` and ``binary``: ``/pred`` ``(n, k)`` float32 class probabilities in class order
  (the ``names`` attribute lists the classes; a binary model's one sigmoid output is stored as the
  two columns ``p`` and ``1 - p``, and the root attribute ``positive`` names the class it scores);
  ``/label`` the class index (-1 when unknown).
- ``regression``: ``/pred`` ``(n, t)`` float32 predictions in the targets' units (``names`` = the
  target names) and ``/target`` ``(n, t)`` float32 the true values.

Root attributes add ``kind`` (``out_of_fold`` or ``ensemble``), ``split``, ``class_names`` (the
classifier's classes; for a regression the one class of its labels), ``target_names`` (regression)
and ``n_rows``. Files without ``objective`` (written before it was recorded) are ``multiclass``.
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
OBJECTIVES = ("multiclass", "binary", "regression")
ORIGIN_DTYPES = {"sample": np.uint16, "file": np.uint16, "entry": np.int64, "item": np.int32}


def write_predictions(path: str | os.PathLike, *, hash: np.ndarray, pred: np.ndarray, fold: np.ndarray,
                      weight: np.ndarray, kind: str, split: str, config_digest: str, created_by: str,
                      label: np.ndarray | None = None, class_names: Sequence[str] = (),
                      target: np.ndarray | None = None, target_names: Sequence[str] | None = None,
                      objective: str = "multiclass", positive: str | None = None,
                      origin: Mapping[str, Any] | None = None, attrs: Mapping[str, Any] | None = None) -> None:
    """Write one predictions file atomically, checking that every column has one row per jet.

    Classifiers give ``label`` and ``class_names`` (binary also ``positive``); a regression gives
    ``target`` and ``target_names``. ``origin`` holds per row ``sample`` and ``file`` (codes into
    its ``samples`` and ``files`` names), ``entry`` and ``item``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    regression = objective == "regression"
    names = list(target_names or []) if regression else list(class_names)
    if regression and (target is None or not names):
        raise ValueError("a regression's predictions need target and target_names")
    if not regression and label is None:
        raise ValueError("a classifier's predictions need label")
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim != 2 or pred.shape[1] != len(names):
        raise ValueError(f"pred has shape {pred.shape}, expected (n, {len(names)})")
    n = len(pred)
    columns = {"hash": np.asarray(hash, dtype=np.uint64), "fold": np.asarray(fold, dtype=np.int16),
               "weight": np.asarray(weight, dtype=np.float32)}
    if not regression:
        columns["label"] = np.asarray(label, dtype=np.int16)
    if origin is not None:
        columns.update({f"index/{k}": np.asarray(origin[k], dtype=ORIGIN_DTYPES[k]) for k in ORIGIN_DTYPES})
    for name, column in columns.items():
        if column.shape != (n,):
            raise ValueError(f"{name} has shape {column.shape}, expected ({n},)")
    if regression:
        target = np.asarray(target, dtype=np.float32)
        if target.shape != pred.shape:
            raise ValueError(f"target has shape {target.shape}, expected {pred.shape}")
    root = {"kind": kind, "split": split, "objective": objective, "class_names": list(class_names), "n_rows": n}
    if regression:
        root["target_names"] = names
    if positive is not None:
        root["positive"] = positive
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, "gzip",
                  attrs={**root, **dict(attrs or {})}) as writer:
        writer.append("index/hash", columns["hash"])
        writer.append("index/fold", columns["fold"])
        if origin is not None:
            for k in ORIGIN_DTYPES:
                writer.append(f"index/{k}", columns[f"index/{k}"])
            writer.set_attrs("index/sample", labels=list(origin["samples"]))
            writer.set_attrs("index/file", labels=list(origin["files"]))
        writer.append("pred", pred)
        writer.set_attrs("pred", names=names)
        if regression:
            writer.append("target", target)
            writer.set_attrs("target", names=names)
        else:
            writer.append("label", columns["label"])
        writer.append("fold", columns["fold"])
        writer.append("weight", columns["weight"])


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    """Read a predictions file: its columns, ``objective``, ``class_names`` (or ``target_names`` and
    ``target`` for a regression), ``kind``, ``split`` and root ``attrs``; where the file has them,
    ``sample`` and ``file`` (names per row), ``entry`` and ``item``."""
    with h5py.File(path, "r") as f:
        check_schema(f, SCHEMA, SCHEMA_VERSION)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        objective = str(attrs.get("objective", "multiclass"))
        out = {
            "hash": f["index/hash"][:],
            "fold": f["fold"][:],
            "pred": f["pred"][:],
            "weight": f["weight"][:],
            "objective": objective,
            "class_names": json.loads(attrs["class_names"]) if "class_names" in attrs else [],
            "kind": str(attrs["kind"]),
            "split": str(attrs["split"]),
            "attrs": attrs,
        }
        if "index/entry" in f:
            for name in ("sample", "file"):
                names = np.asarray(json.loads(f[f"index/{name}"].attrs["labels"]), dtype=str)
                out[name] = names[f[f"index/{name}"][:]]
            out["entry"], out["item"] = f["index/entry"][:], f["index/item"][:]
        if objective == "regression":
            out["target"] = f["target"][:]
            out["target_names"] = json.loads(f["pred"].attrs["names"])
        else:
            out["label"] = f["label"][:]
            out["class_names"] = json.loads(f["pred"].attrs["names"])
        return out
