"""The tracer's index: per event its identity and where each cache holds its rows, as numpy arrays.

Three tables (``events``, ``graphs``, ``selections``) share the columns ``hash`` (uint64),
``sample`` and ``file`` (uint16 codes into the tracer's name lists), ``entry`` (int64),
``source`` (which registered file of that kind, int32), ``start`` and ``count`` (the event's
contiguous rows in that file: one row in an events file, one per graph or passing selection
row otherwise). Lookups sort once and use ``searchsorted``; nothing is kept per event in Python.
Selections files also record which (sample, file) pairs they were evaluated on (``cover``), so
an absent event can be told apart as failing rather than not selected at all.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from tracerflow.hashing import HashCollision, check_unique, hash_hex
from tracerflow.io import events_file, graphs_file, selections_file
from tracerflow.io.h5target import H5Writer, SchemaMismatch, check_schema

KINDS = ("events", "graphs", "selections")
SCHEMAS = {
    "events": (events_file.SCHEMA, events_file.SCHEMA_VERSION),
    "graphs": (graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION),
    "selections": (selections_file.SCHEMA, selections_file.SCHEMA_VERSION),
}
COLUMNS = {
    "hash": np.uint64, "sample": np.uint16, "file": np.uint16, "entry": np.int64,
    "source": np.int32, "start": np.int64, "count": np.int64,
}
COVER_COLUMNS = ("source", "sample", "file")
MAX_CODES = int(np.iinfo(np.uint16).max) + 1
RESERVED_OUTPUTS = ("passed", "item")


class HashTable:
    """Equal-length index columns with a lazily built hash order for ``searchsorted`` lookups."""

    def __init__(self, columns: dict[str, np.ndarray] | None = None) -> None:
        columns = columns or {}
        self.columns = {name: np.asarray(columns.get(name, np.zeros(0, dtype)), dtype=dtype) for name, dtype in COLUMNS.items()}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"index columns of different lengths: { {k: len(v) for k, v in self.columns.items()} }")
        self._order: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.columns["hash"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Row of each hash in this table, -1 where absent."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        if len(self) == 0:
            return np.full(len(hashes), -1, dtype=np.int64)
        if self._order is None:
            self._order = np.argsort(self.columns["hash"], kind="stable")
        ordered = self.columns["hash"][self._order]
        at = np.minimum(np.searchsorted(ordered, hashes), len(ordered) - 1)
        return np.where(ordered[at] == hashes, self._order[at], -1).astype(np.int64)

    def take(self, rows: np.ndarray) -> "HashTable":
        """The table restricted to ``rows`` (positions or a boolean mask), in that order."""
        return HashTable({name: values[rows] for name, values in self.columns.items()})

    def extended(self, other: "HashTable") -> "HashTable":
        """This table followed by the rows of ``other``."""
        return HashTable({name: np.concatenate([self.columns[name], other.columns[name]]) for name in COLUMNS})


class TracerIndex:
    """Name lists, registered file paths, the three hash tables and the selections coverage."""

    def __init__(self) -> None:
        self.samples: list[str] = []
        self.files: list[str] = []
        self.paths: dict[str, list[str]] = {kind: [] for kind in KINDS}
        self.tables: dict[str, HashTable] = {kind: HashTable() for kind in KINDS}
        self.cover: dict[str, np.ndarray] = _empty_cover()

    def copy(self) -> "TracerIndex":
        """An independent copy; the arrays are shared, which is safe because they are never written in place."""
        out = TracerIndex()
        out.samples, out.files = list(self.samples), list(self.files)
        out.paths = {kind: list(p) for kind, p in self.paths.items()}
        out.tables = dict(self.tables)
        out.cover = dict(self.cover)
        return out

    @classmethod
    def from_file(cls, kind: str, path: str | os.PathLike) -> "TracerIndex":
        """Index one cache file of ``kind``, after checking that it is one."""
        path = Path(path).resolve()
        out = cls()
        with _open_cache(kind, path) as f:
            samples = _labels(f, "sample")
            files = _labels(f, "file")
            hashes = f["index/hash"][:]
            ident = {c: f[f"index/{c}"][:] for c in ("sample", "file", "entry")}
            if kind == "events":
                check_unique(hashes, str(path))
                start = np.arange(len(hashes), dtype=np.int64)
                count = np.ones(len(hashes), dtype=np.int64)
            else:
                start, count = _groups(hashes, path)
                ident = {c: v[start] for c, v in ident.items()}
                hashes = hashes[start]
            if kind == "selections":
                clash = sorted(set(f["derived"] if "derived" in f else ()) & set(RESERVED_OUTPUTS))
                if clash:
                    raise ValueError(f"{path}: derived output(s) {clash} clash with keys release_selection() reserves")
                pairs = _covered_pairs(f, samples, files)
                out.cover = {"source": np.zeros(len(pairs), np.int32),
                             "sample": np.array([p[0] for p in pairs], np.uint16),
                             "file": np.array([p[1] for p in pairs], np.uint16)}
        out.samples, out.files = samples, files
        out.paths[kind] = [str(path)]
        out.tables[kind] = HashTable({"hash": hashes, **ident, "source": np.zeros(len(hashes), np.int32),
                                      "start": start, "count": count})
        return out

    def merge(self, other: "TracerIndex") -> None:
        """Add ``other`` in place; an event seen with another identity raises HashCollision."""
        sample_map = _code_map(self.samples, other.samples, "sample")
        file_map = _code_map(self.files, other.files, "file")
        source_maps = {kind: _path_map(self.paths[kind], other.paths[kind]) for kind in KINDS}
        incoming = {}
        for kind in KINDS:
            table = other.tables[kind]
            incoming[kind] = HashTable({
                **table.columns,
                "sample": sample_map[table["sample"]], "file": file_map[table["file"]],
                "source": source_maps[kind][table["source"]],
            })
        for new_kind, new in incoming.items():
            for old_kind, old in self.tables.items():
                self._check_identity(old_kind, old, new_kind, new)
        for kind, new in incoming.items():
            fresh = self.tables[kind].find(new["hash"]) < 0
            if fresh.any():
                self.tables[kind] = self.tables[kind].extended(new.take(fresh))
        cover = {"source": source_maps["selections"][other.cover["source"]],
                 "sample": sample_map[other.cover["sample"]], "file": file_map[other.cover["file"]]}
        merged = {c: np.concatenate([self.cover[c], cover[c]]) for c in COVER_COLUMNS}
        keys = np.stack([merged[c].astype(np.int64) for c in COVER_COLUMNS], axis=1)
        _, first = np.unique(keys, axis=0, return_index=True)
        keep = np.sort(first)
        self.cover = {c: merged[c][keep] for c in COVER_COLUMNS}

    def _check_identity(self, old_kind: str, old: HashTable, new_kind: str, new: HashTable) -> None:
        """Raise HashCollision for a hash present in both tables with a different (sample, file, entry)."""
        rows = old.find(new["hash"])
        hit = np.flatnonzero(rows >= 0)
        if not len(hit):
            return
        there = rows[hit]
        differ = np.zeros(len(hit), dtype=bool)
        for column in ("sample", "file", "entry"):
            differ |= old[column][there] != new[column][hit]
        if differ.any():
            i, j = int(hit[np.argmax(differ)]), int(there[np.argmax(differ)])
            raise HashCollision(
                f"event hash {hash_hex(new['hash'][i])} names two events: "
                f"{self.describe(old_kind, old, j)} and {self.describe(new_kind, new, i)}"
            )

    def describe(self, kind: str, table: HashTable, row: int) -> str:
        """One row of a table in words: its file path and (sample, file, entry)."""
        path = self.paths[kind][int(table["source"][row])]
        return (f"{path} (sample {self.samples[int(table['sample'][row])]!r}, "
                f"file {self.files[int(table['file'][row])]!r}, entry {int(table['entry'][row])})")

    def covered(self, sample: int, file: int) -> bool:
        """Whether a registered selections file was evaluated on this (sample, file) pair."""
        return bool(np.any((self.cover["sample"] == sample) & (self.cover["file"] == file)))

    def dump(self, writer: H5Writer) -> None:
        """Write the index under ``/index`` of an open tracer target."""
        strings = h5py.string_dtype()
        writer.file.create_dataset("index/samples", data=self.samples, dtype=strings)
        writer.file.create_dataset("index/files", data=self.files, dtype=strings)
        for kind in KINDS:
            writer.file.create_dataset(f"index/paths/{kind}", data=self.paths[kind], dtype=strings)
            for name, values in self.tables[kind].columns.items():
                writer.write(f"index/{kind}/{name}", values)
        for name in COVER_COLUMNS:
            writer.write(f"index/cover/{name}", self.cover[name])

    @classmethod
    def load(cls, f: h5py.File) -> "TracerIndex":
        """Read the index written by :meth:`dump` from an open tracer file."""
        out = cls()
        out.samples = _strings(f["index/samples"])
        out.files = _strings(f["index/files"])
        for kind in KINDS:
            out.paths[kind] = _strings(f[f"index/paths/{kind}"])
            out.tables[kind] = HashTable({name: f[f"index/{kind}/{name}"][:] for name in COLUMNS})
        out.cover = {name: f[f"index/cover/{name}"][:] for name in COVER_COLUMNS}
        return out


def _open_cache(kind: str, path: Path) -> h5py.File:
    """Open a cache file of ``kind``, raising a clear error naming it if it is not one."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {kind} file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise SchemaMismatch(f"{path}: not an HDF5 file, cannot be added as tracerflow {kind} ({err})") from None
    try:
        check_schema(f, *SCHEMAS[kind])
    except SchemaMismatch as err:
        f.close()
        raise SchemaMismatch(f"{path} is not a tracerflow {kind} file: {err}") from None
    return f


def _labels(f: h5py.File, column: str) -> list[str]:
    """Names behind the uint16 codes of index column ``sample`` or ``file`` of a cache file."""
    text = f[f"index/{column}"].attrs.get("labels", "[]")
    return list(json.loads(text))


def _groups(hashes: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each run of equal hashes; every event's rows must be contiguous."""
    if not len(hashes):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.flatnonzero(np.concatenate([[True], hashes[1:] != hashes[:-1]])).astype(np.int64)
    count = np.diff(np.concatenate([start, [len(hashes)]])).astype(np.int64)
    try:
        check_unique(hashes[start], str(path))
    except HashCollision as err:
        raise HashCollision(f"{err} (the rows of one event must be contiguous)") from None
    return start, count


def _covered_pairs(f: h5py.File, samples: list[str], files: list[str]) -> list[tuple[int, int]]:
    """(sample, file) codes a selections file was evaluated on: its ``covers`` attribute or its labels."""
    if "covers" in f.attrs:
        named = json.loads(f.attrs["covers"])
        return [(samples.index(s), files.index(n)) for s, n in named]
    return [(s, n) for s in range(len(samples)) for n in range(len(files))]


def _code_map(names: list[str], incoming: list[str], what: str) -> np.ndarray:
    """Codes in ``names`` (extended in place) of each name of ``incoming``."""
    lookup = {name: code for code, name in enumerate(names)}
    out = np.zeros(len(incoming), dtype=np.uint16)
    for code, name in enumerate(incoming):
        if name not in lookup:
            if len(names) >= MAX_CODES:
                raise ValueError(f"more than {MAX_CODES} distinct {what} names in one tracer")
            lookup[name] = len(names)
            names.append(name)
        out[code] = lookup[name]
    return out


def _path_map(paths: list[str], incoming: list[str]) -> np.ndarray:
    """Source ids in ``paths`` (extended in place) of each path of ``incoming``."""
    lookup = {p: i for i, p in enumerate(paths)}
    out = np.zeros(len(incoming), dtype=np.int32)
    for i, path in enumerate(incoming):
        if path not in lookup:
            lookup[path] = len(paths)
            paths.append(path)
        out[i] = lookup[path]
    return out


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[:]]


def _empty_cover() -> dict[str, np.ndarray]:
    return {"source": np.zeros(0, np.int32), "sample": np.zeros(0, np.uint16), "file": np.zeros(0, np.uint16)}
