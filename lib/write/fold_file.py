"""The train sample as a LUMIN fold file: one group per fold, metadata as JSON text datasets.

``meta_data/{cont_feats, cat_feats, targ_feats, wgt_feat, matrix_feats}`` hold JSON as LUMIN
writes it (``matrix_feats``: ``present_feats``, ``vecs``, ``missing``, ``feats_per_vec``,
``row_wise``, ``shape``, plus ``max_len``), and ``fold_{i}/`` holds ``inputs`` (n, n_cont +
n_cat) float32, ``targets`` (n,) or (n, n_targ), ``weights`` (n,) float32, ``matrix_inputs``
(n, max_tracks, n_track_vars) float32 with NaN in padding slots (LUMIN's marker for missing
entries), ``matrix_valid`` (n, max_tracks) bool and ``hash`` (n,) uint64.
A jet goes to ``fold_{fold id}``; folds are appended chunk by chunk in the chunks' order.
"""
from __future__ import annotations

import itertools
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tracerflow.io.h5target import H5Writer
from tracerflow.write.appender import RowAppender, WriteBehind, write_text
from tracerflow.write.chunk import TrainChunk
from tracerflow.write.scaling import apply_scaling, scale_dict_to_json

SCHEMA = "tracerflow.train_folds"
SCHEMA_VERSION = 1
LABEL_TARGET = "label"


def matrix_meta(track_vars: Sequence[str], max_tracks: int) -> dict[str, Any]:
    """LUMIN's row-wise matrix description: one row (vector) per track slot, one column per variable."""
    vecs = [f"track_{i}" for i in range(max_tracks)]
    return {
        "present_feats": [f"{v}_{c}" for v in vecs for c in track_vars],
        "vecs": vecs,
        "missing": [0] * (len(vecs) * len(track_vars)),
        "feats_per_vec": list(track_vars),
        "row_wise": True,
        "shape": [int(max_tracks), len(track_vars)],
        "max_len": int(max_tracks),
        "is_sparse": False,
    }


def _targets(chunk: TrainChunk, targ_feats: Sequence[str], dtype: np.dtype) -> np.ndarray:
    cols = []
    for name in targ_feats:
        if name == LABEL_TARGET:
            cols.append(np.asarray(chunk.label))
        elif name in chunk.add_labels:
            cols.append(np.asarray(chunk.add_labels[name]))
        elif name in chunk.targets:
            cols.append(np.asarray(chunk.targets[name]))
        else:
            raise KeyError(f"target {name!r} is neither {LABEL_TARGET!r} nor an add_label of the chunk")
    if len(cols) == 1:
        return cols[0].astype(dtype)
    return np.stack(cols, axis=1).astype(dtype)


def write_folds(
    path: str | os.PathLike,
    chunks: Iterable[TrainChunk],
    *,
    n_folds: int,
    cont_feats: Sequence[str],
    cat_feats: Sequence[str] = (),
    targ_feats: Sequence[str] = (LABEL_TARGET,),
    matrix_feats: Sequence[str] = (),
    scale_dict: Mapping[str, Any] | None = None,
    targ_type: str | None = None,
    class_names: Sequence[str] | None = None,
    max_tracks: int | None = None,
    compression: str | None = None,
    config_digest: str = "",
    created_by: str = "",
    attrs: Mapping[str, Any] | None = None,
) -> list[int]:
    """Write the fold file and return the number of jets in each fold.

    ``cont_feats`` and ``cat_feats`` are jet variables, ``matrix_feats`` track variables and
    ``targ_feats`` ``"label"`` and/or add_labels (targets are stored as they come). With ``scale_dict`` the continuous and matrix
    features are scaled (NaN -> 0); without it they are stored as they come, NaN included.
    Categorical features are never scaled. ``targ_type`` defaults to int64 when the only
    target is the class label and to float32 otherwise.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    cont_feats, cat_feats, matrix_feats = list(cont_feats), list(cat_feats), list(matrix_feats)
    targ_feats = list(targ_feats)
    if not targ_feats:
        raise ValueError("targ_feats must name at least one target")
    if targ_type is None:
        targ_type = "int64" if targ_feats == [LABEL_TARGET] else "float32"
    targ_dtype = np.dtype(targ_type)
    targ_tail = () if len(targ_feats) == 1 else (len(targ_feats),)
    it = iter(chunks)
    first = next(it, None)
    if max_tracks is None:
        max_tracks = first.max_tracks if first is not None else 0

    root_attrs = {"n_folds": int(n_folds), **dict(attrs or {})}
    if class_names is not None:
        root_attrs["class_names"] = list(class_names)
    counts = [0] * n_folds
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, compression, root_attrs) as w:
        write_text(w, "meta_data/cont_feats", json.dumps(cont_feats))
        write_text(w, "meta_data/cat_feats", json.dumps(cat_feats))
        write_text(w, "meta_data/targ_feats", json.dumps(targ_feats))
        write_text(w, "meta_data/wgt_feat", json.dumps("weight"))
        if matrix_feats:
            write_text(w, "meta_data/matrix_feats", json.dumps(matrix_meta(matrix_feats, max_tracks)))
        if scale_dict is not None:
            write_text(w, "meta_data/scale_dict", scale_dict_to_json(scale_dict))
        rows = RowAppender(w)
        for i in range(n_folds):
            rows.create(f"fold_{i}/inputs", np.float32, (len(cont_feats) + len(cat_feats),))
            rows.create(f"fold_{i}/targets", targ_dtype, targ_tail)
            rows.create(f"fold_{i}/weights", np.float32)
            if matrix_feats:
                rows.create(f"fold_{i}/matrix_inputs", np.float32, (max_tracks, len(matrix_feats)))
                rows.create(f"fold_{i}/matrix_valid", bool, (max_tracks,))
            rows.create(f"fold_{i}/hash", np.uint64)

        matrix_row_bytes = max_tracks * (len(matrix_feats) * 4 + 1)
        with WriteBehind(rows) as behind:
            for whole in itertools.chain([first] if first is not None else [], it):
                whole.validate()
                if matrix_feats and whole.max_tracks != max_tracks:
                    raise ValueError(f"chunk has {whole.max_tracks} track slots, the file {max_tracks}")
                fold = np.asarray(whole.fold)
                if fold.size and (fold.min() < 0 or fold.max() >= n_folds):
                    raise ValueError(f"fold ids must lie in [0, {n_folds}), got [{fold.min()}, {fold.max()}]")
                for chunk in whole.blocks(matrix_row_bytes):
                    behind.add(_fold_rows(chunk, counts, cont_feats, cat_feats, matrix_feats, scale_dict,
                                          targ_feats, targ_dtype))
        rows.flush()
        w.set_attrs("/", fold_sizes=counts, n_jets=sum(counts))
    return counts


def _fold_rows(chunk: TrainChunk, counts: list[int], cont_feats: Sequence[str], cat_feats: Sequence[str],
               matrix_feats: Sequence[str], scale_dict: Mapping[str, Any] | None, targ_feats: Sequence[str],
               targ_dtype: np.dtype) -> dict[str, np.ndarray]:
    """Every ``fold_i`` dataset's rows for the jets of ``chunk``, adding each fold's jets to ``counts``."""
    arrays = _fold_arrays(chunk, cont_feats, cat_feats, matrix_feats, scale_dict)
    arrays["targets"] = _targets(chunk, targ_feats, targ_dtype)
    fold = np.asarray(chunk.fold)
    order = np.argsort(fold, kind="stable")
    bounds = np.searchsorted(fold[order], np.arange(len(counts) + 1))
    batch = {}
    for i in range(len(counts)):
        idx = order[bounds[i] : bounds[i + 1]]
        if not len(idx):
            continue
        for name, arr in arrays.items():
            batch[f"fold_{i}/{name}"] = arr[idx]
        counts[i] += len(idx)
    return batch


def _fold_arrays(
    chunk: TrainChunk,
    cont_feats: Sequence[str],
    cat_feats: Sequence[str],
    matrix_feats: Sequence[str],
    scale_dict: Mapping[str, Any] | None,
) -> dict[str, np.ndarray]:
    """Inputs, weights, matrix and hash of a chunk in fold-file dtypes (targets come separately)."""
    n = len(chunk)
    valid = chunk.valid
    if scale_dict is not None:
        scaled = apply_scaling(chunk, scale_dict, cont_feats, matrix_feats)
        cont, matrix = scaled.jets, scaled.tracks
    else:
        cont = np.empty((n, len(cont_feats)), dtype=np.float32)
        for i, name in enumerate(cont_feats):
            cont[:, i] = chunk.jets[name]
        compact = np.empty((int(np.sum(chunk.counts)), len(matrix_feats)), dtype=np.float32)
        for i, name in enumerate(matrix_feats):
            compact[:, i] = chunk.tracks[name]
        matrix = chunk.padded(compact)
    cat = np.empty((n, len(cat_feats)), dtype=np.float32)
    for i, name in enumerate(cat_feats):
        cat[:, i] = chunk.jets[name]
    out = {
        "inputs": np.concatenate([cont, cat], axis=1),
        "weights": np.asarray(chunk.weight, dtype=np.float32),
        "hash": np.asarray(chunk.hash, dtype=np.uint64),
    }
    if matrix_feats:
        matrix[~valid] = np.nan
        out["matrix_inputs"] = matrix
        out["matrix_valid"] = valid
    return out
