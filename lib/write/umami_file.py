"""The train file in umami's layout, written by WriteTrainSample and read by training and ConvertTFRecords.

``jets/inputs`` (n, n_jet_vars), ``jets/labels`` (n,) int64 (class index, -1 when unknown: rows of
collision data), ``jets/labels_one_hot`` (n, n_classes) uint8 (all 0 when unknown), ``jets/weight`` (n,) float32, ``jets/add_labels/<name>`` (n,) float32 (NaN -> 0, not
scaled, infinities kept), ``jets/targets`` (n, n_targets) float32 (regression targets, raw, finite; only
when there are targets, names in its ``names`` attribute), ``jets/fold`` (n,) int16, ``jets/hash`` (n,) uint64, ``jets/{source, entry, item}`` (where
each row comes from: a position in the root attribute ``sources``, the entry in that ROOT tree,
the row within its event; files written from a resampled split), ``tracks/inputs`` (n, max_tracks,
n_track_vars [+ n_concat]), ``tracks/valid`` (n, max_tracks) bool, ``tracks/labels``
(n, max_tracks, n_track_labels) int8 (-1 in padding) (no ``tracks/`` datasets in an analysis
without graphs), and ``scale_dict`` (JSON text).
Inputs are scaled with the scale dict and stored in ``precision``. Column names are the
``variables`` attribute of each matrix (JSON list); class names are ``label_classes`` on the
label datasets and ``class_names`` on the root. Jet variables concatenated to the tracks
(umami's ``concat_jet_tracks``) follow the track variables and are named ``jet_<var>``.
Uncompressed files of a known length have contiguous datasets, written in place by several
threads (:mod:`tracerflow.write.placed`); compressed ones have row-chunked datasets.

The groups are named ``jets`` and ``tracks`` as in umami unless the writer is given other names
(:mod:`tracerflow.io.umami_groups`); :class:`UmamiFile` reads every dataset by umami's name
whatever the file calls its groups.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.io.h5target import H5Writer, SchemaFile
from tracerflow.io.umami_groups import ATTRIBUTE, group_names, groups_of, name_in, path_in
from tracerflow.write.appender import RowAppender, WriteBehind, read_text, write_text
from tracerflow.write.chunk import TrainChunk
from tracerflow.write.placed import PlacedDatasets
from tracerflow.write.scaling import (scale_dict_from_json, scale_dict_to_json, scale_jets, track_columns_to_pad,
                                     write_scale_dict)
from tracerflow.write.workers import run_all, worker_threads

SCHEMA = "tracerflow.train_umami"
SCHEMA_VERSION = 1
PRECISIONS = ("float16", "float32")
#: Where a row comes from (``id_names``): its source (position in the root attribute ``sources``,
#: ``[sample, file]`` pairs), the entry in that file's tree and its position within the event.
ID_DTYPES = {"source": np.dtype(np.uint32), "entry": np.dtype(np.int64), "item": np.dtype(np.int32)}
READ_CACHE_BYTES = 64 << 20
#: Padded track bytes per block of jets a worker takes at once (few blocks: little per-task overhead).
PLACED_BLOCK_BYTES = 32 << 20
#: Padded track bytes a worker pads before storing them: the piece, the lookup tables (1 MiB for
#: eight float16 variables) and the compact tracks it is made from stay in the core's cache until
#: the kernel copies the piece into the file (4 MiB of L2 per core where this was measured:
#: 0.75 MiB pieces beat 1.5 and 3 MiB ones; 0.375 MiB ones were no better).
PLACED_PIECE_BYTES = 3 << 18


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


@dataclass(frozen=True)
class _UmamiRows:
    """How jets become rows of the train file's datasets: per-jet rows a chunk at a time
    (:meth:`jet_rows`, vectorised numpy) and track rows a block at a time (:meth:`fill_tracks`
    into buffers, or :meth:`store_tracks` straight into the file: compiled loops that release
    the GIL, on worker threads)."""

    scale_dict: Mapping[str, Any]
    class_names: tuple[str, ...]
    jet_vars: tuple[str, ...]
    track_vars: tuple[str, ...]
    concat: tuple[str, ...]
    add_label_names: tuple[str, ...]
    target_names: tuple[str, ...]
    id_names: tuple[str, ...]
    track_label_names: tuple[str, ...]
    label_dtype: np.dtype
    precision: str
    max_tracks: int

    @cached_property
    def datasets(self) -> dict[str, tuple[np.dtype, tuple[int, ...], dict[str, Any]]]:
        """``{path: (dtype, shape after the jet axis, attributes)}`` of every per-jet dataset, in file order."""
        classes = list(self.class_names)
        track_cols = list(self.track_vars) + [f"jet_{v}" for v in self.concat]
        out = {
            "jets/inputs": (self.precision, (len(self.jet_vars),), {"variables": list(self.jet_vars)}),
            "jets/labels": (np.int64, (), {"label_classes": classes}),
            "jets/labels_one_hot": (np.uint8, (len(classes),), {"label_classes": classes}),
            "jets/weight": (np.float32, (), {}),
            "jets/fold": (np.int16, (), {}),
            "jets/hash": (np.uint64, (), {}),
            **{f"jets/{name}": (ID_DTYPES[name], (), {}) for name in self.id_names},
            **{f"jets/add_labels/{name}": (np.float32, (), {}) for name in self.add_label_names},
            **({"jets/targets": (np.float32, (len(self.target_names),), {"names": list(self.target_names)})}
               if self.target_names else {}),
        }
        if self.has_tracks:
            out.update({
                "tracks/inputs": (self.precision, (self.max_tracks, len(track_cols)), {"variables": track_cols}),
                "tracks/valid": (bool, (self.max_tracks,), {}),
                "tracks/labels": (self.label_dtype, (self.max_tracks, len(self.track_label_names)),
                                  {"variables": list(self.track_label_names)}),
            })
        return {name: (np.dtype(dtype), tail, attrs) for name, (dtype, tail, attrs) in out.items()}

    @property
    def has_tracks(self) -> bool:
        """Whether the file has ``tracks/`` datasets: not in an analysis without graphs (jets only)."""
        return bool(self.track_vars or self.concat) and self.max_tracks > 0

    @cached_property
    def track_row_bytes(self) -> int:
        """Bytes of one jet's track rows (inputs, valid, labels): what sizes a block."""
        return sum(dtype.itemsize * int(np.prod(tail)) for name, (dtype, tail, _) in self.datasets.items()
                   if name.startswith("tracks/"))

    def jet_rows(self, chunk: TrainChunk) -> dict[str, np.ndarray]:
        """Rows of every ``jets/`` dataset for the jets of ``chunk`` (checked and scaled), and a check
        that its track labels fit their dtype, so that the track loops need no checks."""
        label = np.asarray(chunk.label)
        n_classes = len(self.class_names)
        if label.size and (label.min() < -1 or label.max() >= n_classes):
            raise ValueError(f"labels must lie in [0, {n_classes}) or be -1 (unknown), got [{label.min()}, {label.max()}]")
        fold = np.asarray(chunk.fold)
        if fold.size and (fold.min() < 0 or fold.max() > np.iinfo(np.int16).max):
            raise ValueError(f"fold ids outside [0, {np.iinfo(np.int16).max}]: [{fold.min()}, {fold.max()}]")
        from tracerflow.write.kernels import check_fits  # numba: compiled kernels load when writing

        check_fits({name: chunk.track_labels[name] for name in self.track_label_names}, self.label_dtype)
        one_hot = np.take(np.eye(n_classes + 1, n_classes, dtype=np.uint8), label % (n_classes + 1), axis=0)
        rows = {
            "jets/inputs": scale_jets(chunk, self.scale_dict, self.jet_vars, self.precision),
            "jets/labels": label.astype(np.int64),
            "jets/labels_one_hot": one_hot,
            "jets/weight": np.asarray(chunk.weight, dtype=np.float32),
            "jets/fold": fold.astype(np.int16),
            "jets/hash": np.asarray(chunk.hash, dtype=np.uint64),
            **{f"jets/{name}": np.asarray(chunk.ids[name], dtype=ID_DTYPES[name]) for name in self.id_names},
        }
        for name in self.add_label_names:
            rows[f"jets/add_labels/{name}"] = _nan_to_zero(chunk.add_labels[name])
        if self.target_names:
            targets = np.stack([np.asarray(chunk.targets[name], np.float32) for name in self.target_names], axis=1)
            bad = ~np.isfinite(targets)
            if bad.any():
                name = self.target_names[int(np.argmax(bad.any(axis=0)))]
                raise ValueError(f"regression target {name!r} is not finite for {int(bad.any(axis=1).sum())} "
                                 "rows: cut them in the selection")
            rows["jets/targets"] = targets
        return rows

    def fill_tracks(self, block: TrainChunk, scaled_jets: np.ndarray | None, out: "TrackRows") -> dict[str, np.ndarray]:
        """The padded ``tracks/`` rows of ``block``'s jets, written into ``out``'s buffers (as many
        rows as the block has jets); ``scaled_jets`` are the block's ``jets/inputs`` rows, needed
        only for concatenated jet variables."""
        rows, stale = out.take(len(block))
        self._pad(block, scaled_jets, stale, rows)
        return rows

    def store_tracks(self, block: TrainChunk, scaled_jets: np.ndarray | None, out: "TrackRows",
                     placed: PlacedDatasets, start: int) -> None:
        """Pad the tracks of ``block`` (rows ``start, ...`` of the file) a few jets at a time through
        ``out``'s buffers, each piece stored by the compiled loop as soon as it is padded."""
        positions = [placed.position(name, start) for name in TrackRows.NAMES]
        first = 0
        while True:
            failed = self._pad(block, scaled_jets, out.stale, out.arrays, placed.fd, positions, first,
                               placed.mutex.address)
            if failed < 0:
                return
            first = min(len(block), failed + len(out))
            placed.write(start + failed, {name: out.arrays[name][:first - failed] for name in TrackRows.NAMES})

    def _pad(self, block: TrainChunk, scaled_jets: np.ndarray | None, stale: np.ndarray,
             rows: Mapping[str, np.ndarray], fd: int = -1, positions: Sequence[int] = (0, 0, 0),
             first_jet: int = 0, mutex: int = 0) -> int:
        """:func:`~tracerflow.write.kernels.pad_track_rows` of ``block`` into ``rows``."""
        from tracerflow.write.kernels import pad_track_rows

        columns, tables = track_columns_to_pad(block, self.scale_dict, self.track_vars, self.precision)
        concat = None
        if self.concat:
            concat = np.ascontiguousarray(scaled_jets[:, [self.jet_vars.index(v) for v in self.concat]])
        return pad_track_rows(block.counts, self.max_tracks, stale, inputs=rows["tracks/inputs"], columns=columns,
                              tables=tables, concat=concat, valid=rows["tracks/valid"], labels=rows["tracks/labels"],
                              label_columns=[block.track_labels[name] for name in self.track_label_names],
                              fd=fd, positions=positions, first_jet=first_jet, mutex=mutex)


class TrackRows:
    """Reused ``tracks/`` buffers of up to ``n`` jets that remember how many slots of each row the
    last block or piece filled: padding is written once, when the buffer is made, and afterwards only
    where an earlier jet had more tracks (in the toy sample four slots in five are never touched)."""

    NAMES = ("tracks/inputs", "tracks/valid", "tracks/labels")

    def __init__(self, layout: _UmamiRows, n: int) -> None:
        fills = dict(zip(self.NAMES, (0, False, -1)))
        self.arrays = {name: np.full((n,) + layout.datasets[name][1], fills[name], layout.datasets[name][0])
                       for name in self.NAMES}
        self.stale = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.stale)

    def take(self, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Views of the first ``n`` rows, and how many slots of each may hold an earlier block's tracks."""
        return {name: array[:n] for name, array in self.arrays.items()}, self.stale[:n]


def _nan_to_zero(values: np.ndarray) -> np.ndarray:
    """float32 copy with NaN replaced by 0 (infinities are kept: they are not missing values)."""
    out = np.asarray(values, dtype=np.float32).copy()
    out[np.isnan(out)] = 0.0
    return out


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
    target_names: Sequence[str] = (),
    id_names: Sequence[str] = (),
    precision: str = "float16",
    compression: str | None = None,
    concat_jet_tracks: bool | Sequence[str] = False,
    max_tracks: int | None = None,
    track_label_dtype: str = "int8",
    config_digest: str = "",
    created_by: str = "",
    attrs: Mapping[str, Any] | None = None,
    expected_jets: int | None = None,
    groups: Mapping[str, str] | None = None,
) -> int:
    """Write the scaled train file from chunks in their final order; return the number of jets.

    ``add_label_names`` defaults to the first chunk's ``add_labels``; ``max_tracks`` to its
    track slots (it is needed only when ``chunks`` is empty). With both given, the file is
    created before the first chunk is read. With ``expected_jets`` (the exact
    number of jets the chunks hold) and no compression, datasets are contiguous and written in
    place by several threads (:mod:`tracerflow.write.placed`); otherwise they are chunked, and one
    thread appends each block while the next is made. ``scale_dict`` is read only when rows are
    made (it may be a mapping whose groups are still being computed, as WriteTrainSample's is).
    ``groups`` renames umami's ``jets`` and ``tracks`` groups in the file (see the module docstring).
    """
    groups = group_names(groups)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    jet_vars, track_vars = tuple(jet_vars), tuple(track_vars)
    if max_tracks is None or add_label_names is None:
        it = iter(chunks)
        first = next(it, None)
        chunks = itertools.chain([first] if first is not None else [], it)
        if max_tracks is None:
            max_tracks = first.max_tracks if first is not None else 0
        if add_label_names is None:
            add_label_names = list(first.add_labels) if first is not None else []
    label_dtype = np.dtype(track_label_dtype)
    if label_dtype.kind != "i":
        raise ValueError(f"track_label_dtype must be a signed integer type, got {track_label_dtype!r}")
    layout = _UmamiRows(scale_dict, tuple(class_names), jet_vars, track_vars,
                        tuple(_concat_names(concat_jet_tracks, jet_vars)), tuple(add_label_names),
                        tuple(target_names), tuple(id_names), tuple(track_label_names), label_dtype, precision,
                        int(max_tracks))
    root_attrs = {
        "class_names": list(class_names),
        "jet_variables": list(jet_vars),
        "track_variables": layout.datasets["tracks/inputs"][2]["variables"] if layout.has_tracks else [],
        "track_label_names": list(track_label_names),
        "add_label_names": list(add_label_names),
        "target_names": list(target_names),
        "concat_jet_tracks": list(layout.concat),
        "precision": precision,
        "max_tracks": int(max_tracks),
        ATTRIBUTE: groups,
        **dict(attrs or {}),
    }
    chunks = _checked(chunks, layout)
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by, compression, root_attrs) as w:
        if compression is None and expected_jets is not None:
            n_jets = _write_placed(w, chunks, layout, int(expected_jets))
        else:
            n_jets = _append_chunked(w, chunks, layout, expected_jets or 0)
        write_text(w, "scale_dict", scale_dict_to_json(scale_dict))
        for umami, name in groups.items():
            if name != umami and umami in w.file:
                w.file.move(umami, name)
        w.set_attrs("/", n_jets=n_jets)
    return n_jets



def _checked(chunks: Iterable[TrainChunk], layout: _UmamiRows) -> Iterator[TrainChunk]:
    """``chunks``, each checked for consistent shapes and the file's track slots."""
    for chunk in chunks:
        chunk.validate()
        if chunk.max_tracks != layout.max_tracks:
            raise ValueError(f"chunk has {chunk.max_tracks} track slots, the file {layout.max_tracks}")
        yield chunk


def _write_placed(w: H5Writer, chunks: Iterable[TrainChunk], layout: _UmamiRows, n_jets: int) -> int:
    """Contiguous datasets of ``n_jets`` rows, written in place by worker threads: the reading thread
    hands out blocks of jets; a worker pads a block's tracks a piece at a time into its own small
    buffers and stores each piece while it is still in the core's cache, or makes and stores a
    chunk's per-jet rows. Stores take turns on the file's :class:`~tracerflow.write.placed.StoreMutex`,
    so the copy into the file runs back to back while the other thread pads the next piece."""
    placed = PlacedDatasets(w, n_jets)
    for name, (dtype, tail, attrs) in layout.datasets.items():
        placed.create(name, dtype, tail, **attrs)
    threads = worker_threads()
    free: queue.Queue[TrackRows] = queue.Queue()
    if layout.has_tracks:
        piece = max(1, PLACED_PIECE_BYTES // layout.track_row_bytes)
        for _ in range(threads):
            free.put(TrackRows(layout, piece))

    def store_tracks(block: TrainChunk, scaled_jets: np.ndarray | None, start: int) -> None:
        buffers = free.get()
        try:
            layout.store_tracks(block, scaled_jets, buffers, placed, start)
        finally:
            free.put(buffers)

    def store_jets(chunk: TrainChunk, jets: dict[str, np.ndarray] | None, start: int) -> None:
        placed.write(start, jets if jets is not None else layout.jet_rows(chunk))

    def tasks() -> Iterator[Callable[[], None]]:
        start = 0
        for chunk in chunks:
            if start + len(chunk) > n_jets:
                raise ValueError(f"the chunks hold more than the {n_jets} jets expected")
            jets = layout.jet_rows(chunk) if layout.concat else None
            offset = start
            for block in chunk.blocks(layout.track_row_bytes, PLACED_BLOCK_BYTES) if layout.has_tracks else ():
                scaled = jets["jets/inputs"][offset - start:offset - start + len(block)] if jets else None
                yield partial(store_tracks, block, scaled, offset)
                offset += len(block)
            yield partial(store_jets, chunk, jets, start)
            start += len(chunk)
        if start != n_jets:
            raise ValueError(f"the chunks hold {start} jets, {n_jets} were expected")

    with placed:
        run_all(tasks(), threads)
    return n_jets


def _append_chunked(w: H5Writer, chunks: Iterable[TrainChunk], layout: _UmamiRows, expected_jets: int) -> int:
    """Chunked (compressible) datasets, each block appended on a writer thread while the next is made."""
    rows = RowAppender(w)
    for name, (dtype, tail, attrs) in layout.datasets.items():
        rows.create(name, dtype, tail, expected_jets, **attrs)
    n_jets = 0
    with WriteBehind(rows) as behind:
        for chunk in chunks:
            jets = layout.jet_rows(chunk)
            offset = 0
            for block in chunk.blocks(layout.track_row_bytes):
                out = {name: values[offset:offset + len(block)] for name, values in jets.items()}
                if layout.has_tracks:
                    out.update(layout.fill_tracks(block, out["jets/inputs"], TrackRows(layout, len(block))))
                behind.add(out)
                offset += len(block)
            n_jets += len(chunk)
    rows.flush()
    return n_jets


class UmamiFile(SchemaFile):
    """Read jets ``[start, stop)`` of a train file, with its names and scale dict."""

    SCHEMA, SCHEMA_VERSION = SCHEMA, SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, rdcc_nbytes=READ_CACHE_BYTES)
        self.groups = groups_of(self._file.attrs)

    def __len__(self) -> int:
        return int(self.dataset("jets/labels").shape[0])



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
    def target_names(self) -> list[str]:
        """Regression targets stored in ``jets/targets`` (none in files of classifiers)."""
        return self._json_attr("target_names") if "target_names" in self._file.attrs else []

    @property
    def class_names(self) -> list[str]:
        return self._json_attr("class_names")

    @property
    def scale_dict(self) -> dict[str, Any]:
        return scale_dict_from_json(read_text(self._file, "scale_dict"))

    def dataset(self, name: str) -> h5py.Dataset:
        """The open dataset umami calls ``name`` (shape, dtype and attributes without reading it)."""
        return self._file[path_in(self.groups, name)]

    def dataset_names(self) -> list[str]:
        """umami's names of the per-jet datasets, in file order."""
        names: list[str] = []
        self._file.visititems(
            lambda name, obj: names.append(name_in(self.groups, name)) if isinstance(obj, h5py.Dataset) and obj.shape else None
        )
        return names

    def read(
        self, start: int = 0, stop: int | None = None, names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Arrays of jets ``[start, stop)`` keyed by umami's dataset names (all per-jet datasets by default)."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        return {name: self.dataset(name)[start:stop] for name in (names or self.dataset_names())}


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
