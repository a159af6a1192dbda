"""Event and Particle views: attribute access into a columnar chunk, materialised only on request.

A view is a chunk and a row number; ``ev.weight`` reads one element of the ``weight`` column
and ``ev.jets`` builds light Particle views over the event's rows of the ``jets`` collection
(a child collection such as ``tracks`` of ``jets`` is ``ev.jets[0].tracks``, and all of an
event's tracks are ``ev.tracks``). ``release_event()`` copies everything into plain records.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from tracerflow.columns import EVENT, EventBatch, _parents_first
from tracerflow.hashing import hash_hex

IDENTITY = ("hash", "sample", "file", "entry")


class Releaser(Protocol):
    """What an Event view asks its tracer for: the graphs and selection of one event."""

    def _release_graph(self, event_hash: int) -> list[dict[str, Any]]: ...

    def _release_selection(self, event_hash: int, sample: int, file: int) -> dict[str, Any] | None: ...


class Record(SimpleNamespace):
    """A materialised event or particle: plain attributes, independent of any file or chunk."""


class Chunk:
    """Events of one read (or of one held file), shared by the views made from them."""

    def __init__(self, batch: EventBatch, samples: list[str], files: list[str]) -> None:
        self.batch = batch
        self.samples = samples
        self.files = files
        self._offsets: dict[str, np.ndarray] = {}
        self.children: dict[str, list[str]] = {}
        for name, table in batch.tables.items():
            self.children.setdefault(table.parent, []).append(name)

    def offsets(self, name: str) -> np.ndarray:
        """Content offsets of collection ``name`` per parent row, computed once per chunk."""
        if name not in self._offsets:
            self._offsets[name] = self.batch.tables[name].offsets
        return self._offsets[name]

    def rows(self, name: str, event: int) -> tuple[int, int]:
        """The contiguous rows of collection ``name`` that belong to event row ``event``."""
        parent = self.batch.tables[name].parent
        lo, hi = (event, event + 1) if parent == EVENT else self.rows(parent, event)
        offsets = self.offsets(name)
        return int(offsets[lo]), int(offsets[hi])


class Particle:
    """One row of a collection; fields and child collections read as attributes."""

    __slots__ = ("_chunk", "_collection", "_row")

    def __init__(self, chunk: Chunk, collection: str, row: int) -> None:
        self._chunk = chunk
        self._collection = collection
        self._row = row

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        table = self._chunk.batch.tables[self._collection]
        if name in table.fields:
            return table.fields[name][self._row]
        if name in self._chunk.children.get(self._collection, ()):
            offsets = self._chunk.offsets(name)
            return [Particle(self._chunk, name, r) for r in range(int(offsets[self._row]), int(offsets[self._row + 1]))]
        raise AttributeError(f"{self._collection} has no field or child collection {name!r}; have {self.__dir__()}")

    def __dir__(self) -> list[str]:
        return sorted(self._chunk.batch.tables[self._collection].fields) + sorted(self._chunk.children.get(self._collection, ()))

    def __repr__(self) -> str:
        fields = self._chunk.batch.tables[self._collection].fields
        shown = ", ".join(f"{k}={v[self._row]!r}" for k, v in list(fields.items())[:4])
        return f"<{self._collection} particle {shown}>"


class Event:
    """One event of a chunk: hash (hex), sample, file, entry, scalars and collections as attributes."""

    __slots__ = ("_chunk", "_row", "_tracer")

    def __init__(self, chunk: Chunk, row: int, tracer: Releaser) -> None:
        self._chunk = chunk
        self._row = row
        self._tracer = tracer

    @property
    def hash(self) -> str:
        """The event hash as 16 hex digits."""
        return hash_hex(self._chunk.batch.index["hash"][self._row])

    @property
    def sample(self) -> str:
        """The sample this event comes from."""
        return self._chunk.samples[int(self._chunk.batch.index["sample"][self._row])]

    @property
    def file(self) -> str:
        """The logical file (relative to its sample's root) this event comes from."""
        return self._chunk.files[int(self._chunk.batch.index["file"][self._row])]

    @property
    def entry(self) -> int:
        """The entry of this event in its ROOT tree."""
        return int(self._chunk.batch.index["entry"][self._row])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        batch = self._chunk.batch
        if name in batch.event:
            return batch.event[name][self._row]
        if name in batch.tables:
            lo, hi = self._chunk.rows(name, self._row)
            return [Particle(self._chunk, name, r) for r in range(lo, hi)]
        raise AttributeError(f"event has no scalar or collection {name!r}; have {self.__dir__()}")

    def __dir__(self) -> list[str]:
        batch = self._chunk.batch
        return list(IDENTITY) + sorted(batch.event) + sorted(batch.tables)

    def __repr__(self) -> str:
        return f"Event(hash={self.hash}, sample={self.sample!r}, file={self.file!r}, entry={self.entry})"

    def release_event(self) -> Record:
        """This event copied into plain records, with every scalar and collection materialised."""
        batch = self._chunk.batch
        out = Record(hash=self.hash, sample=self.sample, file=self.file, entry=self.entry,
                     **{name: values[self._row] for name, values in batch.event.items()})
        records: dict[str, list[Record]] = {}
        for name in _parents_first(batch.tables):
            table = batch.tables[name]
            lo, hi = self._chunk.rows(name, self._row)
            records[name] = [Record(**{k: v[r] for k, v in table.fields.items()}) for r in range(lo, hi)]
            if table.parent != EVENT:
                offsets = self._chunk.offsets(name)
                parent_lo, _ = self._chunk.rows(table.parent, self._row)
                for i, parent in enumerate(records[table.parent]):
                    a, b = int(offsets[parent_lo + i]) - lo, int(offsets[parent_lo + i + 1]) - lo
                    setattr(parent, name, records[name][a:b])
            setattr(out, name, records[name])
        return out

    def release_graph(self) -> list[dict[str, Any]]:
        """The graphs of this event (one per graph-level row); empty if no graphs file holds it."""
        return self._tracer._release_graph(int(self._chunk.batch.index["hash"][self._row]))

    def release_selection(self) -> dict[str, Any] | None:
        """``passed`` and the derived outputs of this event's passing rows; None if no selection covers it."""
        index = self._chunk.batch.index
        return self._tracer._release_selection(int(index["hash"][self._row]), int(index["sample"][self._row]),
                                               int(index["file"][self._row]))
