"""The events HDF5 layout: ``/index``, ``/event/<scalar>``, ``/<collection>/{counts, <field>}``.

Index columns: ``hash`` (uint64), ``sample`` and ``file`` (uint16 codes whose names are the
``labels`` attribute, JSON), ``entry`` (int64, the entry in the source tree). A collection
group carries its ``parent`` (``event`` or another collection) and ``counts`` per parent row;
fields are flat content. The root attribute ``collections`` lists them parents first.
"""
from __future__ import annotations

import json
import os
from typing import Iterator

import h5py
import numpy as np

from tracerflow.columns import EVENT, EventBatch, Table, _parents_first
from tracerflow.io.h5target import H5Writer, SchemaFile

SCHEMA = "tracerflow.events"
SCHEMA_VERSION = 1
INDEX_COLUMNS = ("hash", "sample", "file", "entry")
RESERVED = {"index", "event", "meta"}


def append_batch(writer: H5Writer, batch: EventBatch) -> None:
    """Append one chunk of events (index, scalars, collections) to an open events target."""
    for name in INDEX_COLUMNS:
        writer.append(f"index/{name}", batch.index[name])
    for name, values in batch.event.items():
        writer.append(f"event/{name}", values)
    for name in _parents_first(batch.tables):
        if name in RESERVED:
            raise ValueError(f"collection name {name!r} is reserved in the events layout")
        table = batch.tables[name]
        writer.append(f"{name}/counts", table.counts.astype(np.uint32))
        for field, values in table.fields.items():
            writer.append(f"{name}/{field}", values)


def finish(writer: H5Writer, batch_like: EventBatch, sample_labels: list[str], file_labels: list[str]) -> None:
    """Write the layout attributes once all chunks are in (also for an empty file)."""
    writer.ensure("index/hash", np.uint64)
    writer.ensure("index/sample", np.uint16)
    writer.ensure("index/file", np.uint16)
    writer.ensure("index/entry", np.int64)
    for name, values in batch_like.event.items():
        writer.ensure(f"event/{name}", values.dtype)
    order = _parents_first(batch_like.tables)
    for name in order:
        table = batch_like.tables[name]
        writer.ensure(f"{name}/counts", np.uint32)
        for field, values in table.fields.items():
            writer.ensure(f"{name}/{field}", values.dtype)
        writer.set_attrs(name, parent=table.parent)
    writer.set_attrs("index/sample", labels=sample_labels)
    writer.set_attrs("index/file", labels=file_labels)
    writer.set_attrs("/", collections=order, n_events=int(writer.file["index/hash"].shape[0]))


def generator_weight_sum(path: str | os.PathLike) -> float:
    """The ``sum_generator_weight`` of an events file: its events' generator weights, summed."""
    with h5py.File(path, "r") as f:
        if "sum_generator_weight" not in f.attrs:
            raise KeyError(f"{path}: no sum_generator_weight attribute (written by an older tracerflow; rerun BuildEvents)")
        return float(f.attrs["sum_generator_weight"])


class EventsFile(SchemaFile):
    """Read an events target in slices of events, as :class:`EventBatch` chunks."""

    SCHEMA, SCHEMA_VERSION = SCHEMA, SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        self.collections: list[str] = json.loads(self._file.attrs["collections"])
        self.parents = {name: self._file[name].attrs["parent"] for name in self.collections}
        self._offsets: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self._file["index/hash"].shape[0])

    def labels(self, column: str) -> list[str]:
        """Names behind the uint16 codes of index column ``sample`` or ``file``."""
        return json.loads(self._file[f"index/{column}"].attrs["labels"])

    def fields(self, collection: str) -> list[str]:
        """Field names of a collection, or of the event scalars for ``event``."""
        group = self._file[collection]
        return [k for k in group.keys() if k != "counts"]

    def offsets(self, collection: str) -> np.ndarray:
        """Content offsets of a collection per parent row (cached; length n_parent + 1)."""
        if collection not in self._offsets:
            counts = self._file[f"{collection}/counts"][:]
            out = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=out[1:])
            self._offsets[collection] = out
        return self._offsets[collection]

    def read(self, start: int = 0, stop: int | None = None, fields: dict[str, list[str]] | None = None) -> EventBatch:
        """Read events ``[start, stop)``; ``fields`` restricts what is loaded per collection."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(start, stop)
        index = {name: self._file[f"index/{name}"][start:stop] for name in INDEX_COLUMNS}
        wanted = fields or {}
        event_fields = wanted.get(EVENT, self.fields("event") if "event" in self._file else [])
        event = {name: self._file[f"event/{name}"][start:stop] for name in event_fields}
        rows: dict[str, tuple[int, int]] = {EVENT: (start, stop)}
        tables: dict[str, Table] = {}
        for name in self.collections:
            if fields is not None and name not in wanted and not self._is_needed_parent(name, wanted):
                continue
            lo, hi = rows[self.parents[name]]
            offsets = self.offsets(name)
            c0, c1 = int(offsets[lo]), int(offsets[hi])
            rows[name] = (c0, c1)
            names = wanted.get(name, []) if fields is not None else self.fields(name)
            tables[name] = Table(
                counts=self._file[f"{name}/counts"][lo:hi].astype(np.int64),
                fields={f: self._file[f"{name}/{f}"][c0:c1] for f in names},
                parent=self.parents[name],
            )
        return EventBatch(index=index, event=event, tables=tables, sample_names=tuple(self.labels("sample")))

    def _is_needed_parent(self, name: str, wanted: dict[str, list[str]]) -> bool:
        return any(self._chain(child).count(name) for child in wanted if child in self.parents)

    def _chain(self, name: str) -> list[str]:
        chain = []
        while name != EVENT:
            name = self.parents[name]
            chain.append(name)
        return chain

    def iter_chunks(self, chunk_size: int, fields: dict[str, list[str]] | None = None) -> Iterator[EventBatch]:
        """Yield consecutive chunks of at most ``chunk_size`` events."""
        for start in range(0, len(self), chunk_size):
            yield self.read(start, start + chunk_size, fields)
