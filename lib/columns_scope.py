"""Name resolution on an :class:`EventBatch` at one level (event or a collection).

Expressions and templates ask a scope for ``field`` (an event scalar), ``jets.pt`` (a
collection field) or ``reduce(...)``; values of ancestor levels are broadcast down to the
scope's level and values of descendant levels must be reduced, never silently misaligned.
"""
from __future__ import annotations

import numpy as np

from tracerflow.columns import EVENT, EventBatch


class ScopeError(KeyError):
    """A name that does not exist at, above or below the requested level."""

    def __str__(self) -> str:
        return str(self.args[0])


class Scope:
    """Arrays of ``batch`` aligned to the rows of ``level``."""

    def __init__(self, batch: EventBatch, level: str = EVENT, extra: dict[str, np.ndarray] | None = None) -> None:
        if level != EVENT and level not in batch.tables:
            raise ScopeError(f"unknown collection {level!r}; have {sorted(batch.tables)}")
        self.batch = batch
        self.level = level
        self.extra = dict(extra or {})
        self._maps: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return self.batch.rows_of(self.level)

    def split(self, name: str) -> tuple[str, str]:
        """Split ``coll.field`` into (level, field); a bare name is an event scalar."""
        coll, _, field = name.rpartition(".")
        return (coll or EVENT), field

    def raw(self, name: str) -> tuple[np.ndarray, str]:
        """The stored array behind ``name`` and its level, without alignment."""
        if name in self.extra:
            return self.extra[name], self.level
        level, field = self.split(name)
        if level == EVENT:
            source = {**self.batch.event, **self._index()}
        elif level in self.batch.tables:
            source = self.batch.tables[level].fields
        else:
            raise ScopeError(f"unknown collection {level!r} in {name!r}; have {sorted(self.batch.tables)}")
        if field not in source:
            raise ScopeError(f"unknown field {field!r} of {level}; have {sorted(source)}")
        return source[field], level

    def _index(self) -> dict[str, np.ndarray]:
        """Index columns as expressions see them: ``sample`` is the row's sample name (a string),
        never the per-file sample index; without names it is not there."""
        index = {k: v for k, v in self.batch.index.items() if k != "sample"}
        names = self.batch.sample_names
        if names and "sample" in self.batch.index:
            index["sample"] = np.asarray(names)[self.batch.index["sample"]]
        return index

    def __getitem__(self, name: str) -> np.ndarray:
        values, level = self.raw(name)
        if level == self.level:
            return values
        if not self.is_ancestor(level, self.level):
            raise ScopeError(
                f"{name!r} lives on {level!r}, below {self.level!r}: reduce it (sum, max, min, count, at)"
            )
        return values[self.row_map(self.level, level)]

    def level_of(self, name: str) -> str:
        return self.raw(name)[1]

    def chain(self, level: str) -> list[str]:
        """Levels from ``level`` up to the event, inclusive."""
        out = [level]
        while level != EVENT:
            if level not in self.batch.tables:
                raise ScopeError(f"unknown collection {level!r}; have {sorted(self.batch.tables)}")
            level = self.batch.tables[level].parent
            out.append(level)
        return out

    def is_ancestor(self, ancestor: str, level: str) -> bool:
        return ancestor in self.chain(level)[1:]

    def row_map(self, level: str, ancestor: str) -> np.ndarray:
        """For each row of ``level``, the row of ``ancestor`` that owns it."""
        key = (level, ancestor)
        if key not in self._maps:
            rows = np.arange(self.batch.rows_of(level), dtype=np.int64)
            current = level
            while current != ancestor:
                table = self.batch.tables[current]
                rows = table.parent_row()[rows]
                current = table.parent
            self._maps[key] = rows
        return self._maps[key]

    def reduce(self, op: str, values: np.ndarray, level: str, position: int = 0) -> np.ndarray:
        """Reduce ``values`` of descendant ``level`` to this scope's rows."""
        if level == self.level:
            raise ScopeError(f"{op}() needs values of a collection below {self.level!r}")
        if not self.is_ancestor(self.level, level):
            raise ScopeError(f"{op}(): {level!r} is not below {self.level!r}")
        owner = self.row_map(level, self.level)
        n = len(self)
        if op == "count":
            return np.bincount(owner, minlength=n).astype(np.int64)
        if op == "sum":
            return np.bincount(owner, weights=values, minlength=n)
        if op in ("max", "min"):
            fill = -np.inf if op == "max" else np.inf
            out = np.full(n, fill, dtype=np.float64)
            (np.maximum if op == "max" else np.minimum).at(out, owner, values)
            out[np.isinf(out) & (np.bincount(owner, minlength=n) == 0)] = np.nan
            return out
        if op == "at":
            first = np.searchsorted(owner, np.arange(n), side="left")
            counts = np.bincount(owner, minlength=n)
            out = np.full(n, np.nan, dtype=np.float64)
            has = counts > position
            out[has] = values[first[has] + position]
            return out
        raise ScopeError(f"unknown reduction {op!r}")
