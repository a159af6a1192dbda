"""In-memory columnar chunks of events: event scalars plus ragged collections.

A chunk is what every stage computes on: whole arrays, never per-event Python objects.
A collection (jets, tracks, ...) is flat content plus ``counts`` per row of its parent
(the event, or another collection such as jets for tracks).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EVENT = "event"



def ragged_index(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1`` for every row, back to back: the
    flat positions of ragged rows, for gathering them from or scattering them into another array."""
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(int(counts.sum()), dtype=np.int64)

@dataclass
class Table:
    """A ragged collection: ``fields`` hold flat content, ``counts`` its length per parent row."""

    counts: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    parent: str = EVENT

    def __len__(self) -> int:
        return int(self.counts.sum())

    @property
    def offsets(self) -> np.ndarray:
        """Start of each parent row's content, with the total appended (length n_parent + 1)."""
        out = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=out[1:])
        return out

    def parent_row(self) -> np.ndarray:
        """Index of the parent row that owns each content row."""
        return np.repeat(np.arange(len(self.counts), dtype=np.int64), self.counts)

    def local_index(self) -> np.ndarray:
        """Position of each content row within its parent row (0, 1, ... per parent)."""
        start = np.repeat(self.offsets[:-1], self.counts)
        return np.arange(len(self), dtype=np.int64) - start


@dataclass
class EventBatch:
    """A chunk of events: index columns, event scalars and named collections.

    ``sample_names`` are the names behind ``index["sample"]`` (which counts from 0 in every file):
    expressions read a row's sample by name (``sample == 'ttbar'``).
    """

    index: dict[str, np.ndarray]
    event: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    sample_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.index["hash"])

    def event_row(self, name: str) -> np.ndarray:
        """Index of the event owning each row of collection ``name`` (following parents)."""
        table = self.tables[name]
        rows = table.parent_row()
        while table.parent != EVENT:
            parent = self.tables[table.parent]
            rows = parent.parent_row()[rows]
            table = parent
        return rows

    def rows_of(self, level: str) -> int:
        """Number of rows at ``level`` (``event`` or a collection name)."""
        return len(self) if level == EVENT else len(self.tables[level])

    def take(self, mask: np.ndarray) -> "EventBatch":
        """Return the events where ``mask`` is true, with all their collections."""
        keep = np.flatnonzero(mask)
        index = {k: v[keep] for k, v in self.index.items()}
        event = {k: v[keep] for k, v in self.event.items()}
        tables: dict[str, Table] = {}
        kept_rows: dict[str, np.ndarray] = {}
        for name in _parents_first(self.tables):
            table = self.tables[name]
            parent_keep = keep if table.parent == EVENT else kept_rows[table.parent]
            row_keep = np.isin(table.parent_row(), parent_keep) if len(table) else np.zeros(0, bool)
            tables[name] = Table(
                counts=table.counts[parent_keep],
                fields={k: v[row_keep] for k, v in table.fields.items()},
                parent=table.parent,
            )
            kept_rows[name] = np.flatnonzero(row_keep)
        return EventBatch(index=index, event=event, tables=tables, sample_names=self.sample_names)


def _parents_first(tables: dict[str, Table]) -> list[str]:
    """Order collection names so that every parent comes before its children."""
    done: list[str] = []
    pending = list(tables)
    while pending:
        progressed = False
        for name in list(pending):
            parent = tables[name].parent
            if parent == EVENT or parent in done:
                done.append(name)
                pending.remove(name)
                progressed = True
        if not progressed:
            raise ValueError(f"collections with unknown or circular parents: {pending}")
    return done
