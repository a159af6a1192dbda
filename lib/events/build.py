"""BuildEvents: one ROOT file -> one events HDF5 file, read in chunks with uproot.

Memory is bounded by ``chunk_size`` entries: each chunk is read, turned into columns by the
event template, hashed, checked and appended to the target before the next is read, and the
heap is trimmed after each chunk (see :mod:`tracerflow.memory`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tracerflow.columns import EventBatch
from tracerflow.events.entries import EntryFilter, select_entries
from tracerflow.events.source import RootSource
from tracerflow.hashing import event_hashes
from tracerflow.io import events_file
from tracerflow.io.h5target import H5Writer
from tracerflow.memory import release_free_memory
from tracerflow.templates.event import EventTemplate, TemplateError


class InputError(RuntimeError):
    """Bad input data: a NaN, an empty tree, values a template cannot use. Names file and key."""


@dataclass(frozen=True)
class EventStats:
    """What one BuildEvents call read and wrote."""

    entries_in_tree: int
    events: int
    chunks: int


def build_events(
    source: str | os.PathLike,
    out_path: str | os.PathLike,
    template: EventTemplate,
    *,
    sample: str,
    logical_file: str,
    tree: str,
    config_digest: str,
    created_by: str,
    entry_filter: EntryFilter = EntryFilter(),
    chunk_size: int = 100_000,
    threads: int = 1,
    compression: str | None = None,
    allow_nan: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> EventStats:
    """Read ``tree`` of ``source`` through ``template`` and write the events target atomically."""
    source = Path(source)
    with RootSource(source, tree, threads) as root:
        root.require_branches(template.branches(), "event.template")
        if root.num_entries == 0:
            raise InputError(f"{source}: tree {tree!r} is empty (0 entries)")
        entries = select_entries(root.num_entries, entry_filter, _run_event_reader(root, entry_filter))
        chunks = 0
        with H5Writer(
            out_path, events_file.SCHEMA, events_file.SCHEMA_VERSION, config_digest, created_by, compression,
            attrs={"sample": sample, "file": logical_file, "tree": tree, "entries_in_tree": root.num_entries},
        ) as writer:
            batches = _batches(root, template, entries, chunk_size, source, (sample, logical_file, tree), allow_nan)
            layout: EventBatch | None = None
            for batch, done in batches:
                events_file.append_batch(writer, batch)
                if layout is None:
                    layout = batch.take(np.zeros(len(batch), bool))
                del batch
                release_free_memory()
                chunks += 1
                if progress:
                    progress(done, len(entries))
            if layout is None:
                layout = template.build(root.read(template.branches(), entries[:0]), _empty_index())
            events_file.finish(writer, layout, [sample], [logical_file])
    return EventStats(root.num_entries, len(entries), chunks)


def _batches(root: RootSource, template: EventTemplate, entries: np.ndarray, chunk_size: int, source: Path,
             identity: tuple[str, str, str], allow_nan: bool) -> Iterator[tuple[EventBatch, int]]:
    """Read, check, hash and template ``entries`` chunk by chunk; yield each batch and entries done.

    Hashes need no uniqueness check here: within one file they are distinct by construction
    (see :mod:`tracerflow.hashing`); collisions across files are caught where files meet.
    """
    for lo in range(0, len(entries), chunk_size):
        chunk_entries = entries[lo:lo + chunk_size]
        arrays = root.read(template.branches(), chunk_entries)
        _check_nan(arrays, source, chunk_entries, allow_nan)
        index = {
            "hash": event_hashes(*identity, chunk_entries),
            "sample": np.zeros(len(chunk_entries), np.uint16),
            "file": np.zeros(len(chunk_entries), np.uint16),
            "entry": chunk_entries,
        }
        try:
            batch = template.build(arrays, index, sample_names=(identity[0],))
        except TemplateError as err:
            raise TemplateError(f"{source}: {err}") from None
        del arrays
        yield batch, min(lo + chunk_size, len(entries))
        del batch


def _empty_index() -> dict[str, np.ndarray]:
    return {"hash": np.zeros(0, np.uint64), "sample": np.zeros(0, np.uint16),
            "file": np.zeros(0, np.uint16), "entry": np.zeros(0, np.int64)}


def _run_event_reader(root: RootSource, flt: EntryFilter):
    if not flt.needs_run_event:
        return None
    run_branch, event_branch = flt.run_event_branches
    root.require_branches([run_branch, event_branch], "event.run_event_branches")

    def read(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arrays = root.read([run_branch, event_branch], entries)
        return np.asarray(arrays[run_branch]), np.asarray(arrays[event_branch])

    return read


def _check_nan(arrays: dict, source: Path, entries: np.ndarray, allow_nan: bool) -> None:
    """Raise :class:`InputError` naming the file, branch and entry of the first NaN.

    A sum is NaN when any term is (or when +inf meets -inf), so one cheap reduction clears a
    branch; only a NaN sum pays for the exact search.
    """
    if allow_nan:
        return
    import awkward as ak

    for branch, values in arrays.items():
        jagged = not isinstance(values, np.ndarray) and values.ndim > 1
        flat = _flat_content(values) if jagged else np.asarray(values)
        if flat.dtype.kind != "f":
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            if not np.isnan(np.add.reduce(flat, dtype=np.float64)):
                continue
        bad = np.isnan(flat)
        if bad.any():
            if not jagged:
                entry = int(entries[np.argmax(bad)])
            else:
                per_entry = ak.to_numpy(ak.any(np.isnan(values), axis=-1))
                entry = int(entries[np.argmax(per_entry)])
            raise InputError(
                f"{source}: branch {branch!r} holds NaN (first at entry {entry}); "
                "fix the input or set event.allow_nan: true"
            )


def _flat_content(values) -> np.ndarray:
    """All numbers of a jagged array: its content buffer when that holds exactly them (no copy)."""
    import awkward as ak

    layout = values.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        offsets = np.asarray(layout.offsets.data)
        if len(offsets) and offsets[0] == 0 and offsets[-1] == layout.content.length:
            return np.asarray(layout.content.data)
    return ak.to_numpy(ak.flatten(values, axis=None))
