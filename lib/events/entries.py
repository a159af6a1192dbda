"""Entry filters: which entries of a tree BuildEvents reads.

Applied per file in this order: the ``[event_start, event_stop)`` range (AnalysisG's
EventStart/EventStop), ``entry_list`` and ``skip_entry_list``, ``run_event_list`` and
``skip_run_event_list`` (pairs of run and event number, read from the two branches named by
``run_event_branches``), then ``n_skip`` drops the first n entries that are left (SPINE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class EntryFilter:
    """The entry-filter settings of the ``event`` config block."""

    event_start: int | None = None
    event_stop: int | None = None
    n_skip: int = 0
    entry_list: tuple[int, ...] | None = None
    skip_entry_list: tuple[int, ...] = ()
    run_event_list: tuple[tuple[int, int], ...] | None = None
    skip_run_event_list: tuple[tuple[int, int], ...] = ()
    run_event_branches: tuple[str, str] = ("run", "event_number")

    @property
    def needs_run_event(self) -> bool:
        return self.run_event_list is not None or bool(self.skip_run_event_list)

    @property
    def is_trivial(self) -> bool:
        return self == EntryFilter(run_event_branches=self.run_event_branches)


def _pairs_key(run: np.ndarray, event: np.ndarray) -> np.ndarray:
    return np.asarray(run, np.int64) * np.int64(1 << 40) + np.asarray(event, np.int64)


def _pair_array(pairs: Sequence[Sequence[int]]) -> np.ndarray:
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return _pairs_key(arr[:, 0], arr[:, 1])


def select_entries(
    n_entries: int,
    flt: EntryFilter,
    read_run_event: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Sorted entries (int64) of a tree with ``n_entries`` that pass ``flt``.

    ``read_run_event(entries)`` returns the run and event numbers of those entries; it is
    called only when a run/event list is set.
    """
    start = max(0, flt.event_start or 0)
    stop = n_entries if flt.event_stop is None else min(n_entries, max(flt.event_stop, 0))
    entries = np.arange(start, max(start, stop), dtype=np.int64)
    if flt.entry_list is not None:
        entries = np.intersect1d(entries, np.asarray(flt.entry_list, dtype=np.int64))
    if flt.skip_entry_list:
        entries = np.setdiff1d(entries, np.asarray(flt.skip_entry_list, dtype=np.int64))
    if flt.needs_run_event and len(entries):
        if read_run_event is None:
            raise ValueError("a run/event list needs the run and event branches")
        run, event = read_run_event(entries)
        keys = _pairs_key(run, event)
        keep = np.ones(len(entries), dtype=bool)
        if flt.run_event_list is not None:
            keep &= np.isin(keys, _pair_array(flt.run_event_list))
        if flt.skip_run_event_list:
            keep &= ~np.isin(keys, _pair_array(flt.skip_run_event_list))
        entries = entries[keep]
    return entries[flt.n_skip:]
