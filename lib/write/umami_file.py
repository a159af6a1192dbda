"""The train file in umami's layout, written by WriteTrainSample and read by training and ConvertTFRecords.

``jets/inputs`` (n, n_jet_vars), ``jets/labels`` (n,) int64, ``jets/labels_one_hot`` (n, n_classes)
uint8, ``jets/weight`` (n,) float32, ``jets/add_labels/<name>`` (n,) float32 (NaN -> 0, not
scaled, infinities kept), ``jets/fold`` (n,) int16, ``jets/hash`` (n,) uint64, ``tracks/inputs`` (n, max_tracks,
n_track_vars [+ n_concat]), ``tracks/valid`` (n, max_tracks) bool, ``tracks/labels``
(n, max_tracks, n_track_labels) int8 (-1 in padding), and ``scale_dict`` (JSON text).
Inputs are scaled with the scale dict and stored in ``precision``. Column names are the
``variables`` attribute of each matrix (JSON list); class names are ``label_classes`` on the
label datasets and ``class_names`` on the root. Jet variables concatenated to the tracks
(umami's ``concat_jet_tracks``) follow the track variables and are named ``jet_<var>``.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.io.h5target import H5Writer, SchemaFile
from tracerflow.write.appender import RowAppender, WriteBehind, read_text, write_text
from tracerflow.write.chunk import TrainChunk
from tracerflow.write.scaling import apply_scaling, scale_dict_from_json, scale_dict_to_json, write_scale_dict

SCHEMA = "tracerflow.train_umami"
SCHEMA_VERSION = 1
PRECISIONS = ("float16", "float32")
READ_CACHE_BYTES = 64 << 20


def scale_dict_path(train_path: str | os.PathLike) -> Path:
    """Where the scale dict of a train file lives beside it: ``<stem>.scale_dict.json``."""
    train_path = Path(train_path)
    return train_path.with_name(f"{train_path.stem}.scale_dict.json")


def write_scale_dict_beside(train_path: str | os.PathLike, scale_dict: Mapping[str, Any]) -> Path:
    """Write ``scale_dict`` as JSON at :func:`scale_dict_path` of ``train_path`` and return that path."""
    return write_scale_dict(scale_dict_path(train_path), scale_dict)


def _concat_names(concat_jet_tracks: bool | Sequence[str], jet_vars: Sequence[str]) -> list[str]:
    if isinstance(concat_jet_tracks, bool):
        return list(jet_vars) if concat_jet_tracks else []
    names = list(concat_jet_tracks)
    unknown = [v for v in names if v not in jet_vars]
    if unknown:
        raise ValueError(f"concat_jet_tracks names variables that are not jet inputs: {unknown}")
    return names


def _int_dtype_for(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise ValueError(f"{what} outside the range of {dtype} [{info.min}, {info.max}]")
    return values.astype(dtype)


def write_umami(
    path: str | os.PathLike,
    chunks: Iterable[TrainChunk],
    *,
    class_names: Sequence[str],
    jet_vars: Sequence[str],
    track_vars: Sequence[str],
    scale_dict: Mapping[str, Any],
    track_label_names: Sequence[str] = (),
    add_label_names: Sequence[str] | None = None,
    precision: str = "float16",
    compression: str | None = None,
    concat_jet_tracks: bool | Sequence[str] = False,
    max_tracks: int | None = None,
    track_label_dtype: str = "int8",
    config_digest: str = "",
    created_by: str = "",
    attrs: Mapping[str, Any] | None = None,
    expected_jets: int | None = None,
) -> int:
    """Write the scaled train file from chunks in their final order; return the number of jets.

    ``add_label_names`` defaults to the first chunk's ``add_labels``; ``max_tracks`` to its
    track slots (it is needed only when ``chunks`` is empty). ``expected_jets``, when the caller
    knows it, sizes the datasets up front so that writing never has to grow them.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    jet_vars, track_vars = list(jet_vars), list(track_vars)
    concat = _concat_names(concat_jet_tracks, jet_vars)
    concat_idx = [jet_vars.index(v) for v in concat]
    n_classes = len(class_names)
    it = iter(chunks)
    first = next(it, None)
    if max_tracks is None:
        max_tracks = first.max_tracks if first is not None else 0
    if add_label_names is None:
        add_label_names = list(first.add_labels) if first is not None else []
    add_label_names, track_label_names = list(add_label_names), list(track_label_names)
    label_dtype = np.dtype(track_label_dtype)
    if label_dtype.kind != "i":
        raise ValueError(f"track_label_dtype must be a signed integer type, got {track_label_dtype!r}")

    root_attrs = {
        "class_names": list(class_names),
        "jet_variables": jet_vars,
        "track_variables": track_vars + [f"jet_{v}" for v in concat],
        "track_label_names": track_label_names,
        "add_label_names": add_label_names,
        "concat_jet_tracks": concat,
        "precision": precision,
        "max_tracks": int(max_tracks),
        **dict(attrs or {}),
    }
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, compression, root_attrs) as w:
        n = expected_jets or 0
        rows = RowAppender(w)
        rows.create("jets/inputs", precision, (len(jet_vars),), n, variables=jet_vars)
        rows.create("jets/labels", np.int64, (), n, label_classes=list(class_names))
        rows.create("jets/labels_one_hot", np.uint8, (n_classes,), n, label_classes=list(class_names))
        rows.create("jets/weight", np.float32, (), n)
        rows.create("jets/fold", np.int16, (), n)
        rows.create("jets/hash", np.uint64, (), n)
        for name in add_label_names:
            rows.create(f"jets/add_labels/{name}", np.float32, (), n)
        track_cols = root_attrs["track_variables"]
        rows.create("tracks/inputs", precision, (max_tracks, len(track_cols)), n, variables=track_cols)
        rows.create("tracks/valid", bool, (max_tracks,), n)
        rows.create("tracks/labels", label_dtype, (max_tracks, len(track_label_names)), n, variables=track_label_names)
        write_text(w, "scale_dict", scale_dict_to_json(scale_dict))

        eye = np.eye(n_classes, dtype=np.uint8)
        n_jets = 0
        track_row_bytes = max_tracks * (len(track_cols) * np.dtype(precision).itemsize + 1 + len(track_label_names))
        with WriteBehind(rows) as behind:
            for whole in itertools.chain([first] if first is not None else [], it):
                whole.validate()
                if whole.max_tracks != max_tracks:
                    raise ValueError(f"chunk has {whole.max_tracks} track slots, the file {max_tracks}")
                for chunk in whole.blocks(track_row_bytes):
                    behind.add(_umami_rows(chunk, scale_dict, jet_vars, track_vars, concat_idx, add_label_names,
                                           track_label_names, label_dtype, eye, precision))
                n_jets += len(whole)
        rows.flush()
        w.set_attrs("/", n_jets=n_jets)
    return n_jets


def _umami_rows(chunk: TrainChunk, scale_dict: Mapping[str, Any], jet_vars: Sequence[str], track_vars: Sequence[str],
                concat_idx: Sequence[int], add_label_names: Sequence[str], track_label_names: Sequence[str],
                label_dtype: np.dtype, eye: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    """Every dataset's rows for the jets of ``chunk``: scaled inputs, labels, padded tracks."""
    label = np.asarray(chunk.label).astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= len(eye)):
        raise ValueError(f"labels must lie in [0, {len(eye)}), got [{label.min()}, {label.max()}]")
    scaled = apply_scaling(chunk, scale_dict, jet_vars, track_vars, dtype=precision)
    tracks = scaled.tracks
    valid = chunk.valid
    if concat_idx:
        rep = np.where(valid[:, :, None], scaled.jets[:, None, list(concat_idx)], np.zeros((), precision))
        tracks = np.concatenate([tracks, rep], axis=2)
    batch = {
        "jets/inputs": scaled.jets,
        "jets/labels": label,
        "jets/labels_one_hot": eye[label],
        "jets/weight": np.asarray(chunk.weight, dtype=np.float32),
        "jets/fold": _int_dtype_for(np.asarray(chunk.fold), np.dtype(np.int16), "fold ids"),
        "jets/hash": np.asarray(chunk.hash, dtype=np.uint64),
    }
    for name in add_label_names:
        batch[f"jets/add_labels/{name}"] = _nan_to_zero(chunk.add_labels[name])
    batch["tracks/inputs"] = tracks
    batch["tracks/valid"] = valid
    batch["tracks/labels"] = _track_labels(chunk, track_label_names, label_dtype)
    return batch


def _nan_to_zero(values: np.ndarray) -> np.ndarray:
    """float32 copy with NaN replaced by 0 (infinities are kept: they are not missing values)."""
    out = np.asarray(values, dtype=np.float32).copy()
    out[np.isnan(out)] = 0.0
    return out


def _track_labels(chunk: TrainChunk, names: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """Stack the track labels along the last axis, -1 in padding slots."""
    stacked = np.empty((int(np.sum(chunk.counts)), len(names)), dtype=dtype)
    for i, name in enumerate(names):
        stacked[:, i] = _int_dtype_for(np.asarray(chunk.track_labels[name]), dtype, f"track label {name!r}")
    return chunk.padded(stacked, -1)


class UmamiFile(SchemaFile):
    """Read jets ``[start, stop)`` of a train file, with its names and scale dict."""

    SCHEMA, SCHEMA_VERSION = SCHEMA, SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, rdcc_nbytes=READ_CACHE_BYTES)

    def __len__(self) -> int:
        return int(self._file["jets/labels"].shape[0])

    def _json_attr(self, name: str) -> list[str]:
        return json.loads(self._file.attrs[name])

    @property
    def jet_variables(self) -> list[str]:
        return self._json_attr("jet_variables")

    @property
    def track_variables(self) -> list[str]:
        """Column names of ``tracks/inputs``, concatenated jet variables included."""
        return self._json_attr("track_variables")

    @property
    def track_label_names(self) -> list[str]:
        return self._json_attr("track_label_names")

    @property
    def add_label_names(self) -> list[str]:
        return self._json_attr("add_label_names")

    @property
    def class_names(self) -> list[str]:
        return self._json_attr("class_names")

    @property
    def scale_dict(self) -> dict[str, Any]:
        return scale_dict_from_json(read_text(self._file, "scale_dict"))

    def dataset(self, name: str) -> h5py.Dataset:
        """The open dataset ``name`` (shape, dtype and attributes without reading it)."""
        return self._file[name]

    def dataset_names(self) -> list[str]:
        """Paths of the per-jet datasets, in file order."""
        names: list[str] = []
        self._file.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) and obj.shape else None
        )
        return names

    def read(
        self, start: int = 0, stop: int | None = None, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Arrays of jets ``[start, stop)`` keyed by dataset path (all per-jet datasets by default)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        return {name: self._file[name][start:stop] for name in (names or self.dataset_names())}


def read_umami(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Every per-jet dataset of jets ``[start, stop)``, keyed by dataset path (``jets/inputs``, ...)."""
    with UmamiFile(path) as f:
        return f.read(start, stop)


def read_umami_names(path: str | os.PathLike) -> dict[str, list[str]]:
    """Column and class names of a train file: jet, track, track-label, add-label and class names."""
    with UmamiFile(path) as f:
        return {
            "jet_variables": f.jet_variables,
            "track_variables": f.track_variables,
            "track_label_names": f.track_label_names,
            "add_label_names": f.add_label_names,
            "class_names": f.class_names,
        }
