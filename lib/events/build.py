"""BuildEvents: one ROOT file -> one events HDF5 file, read in chunks with uproot.

Memory is bounded by ``chunk_size`` entries: each chunk is read, turned into columns by the
event template, hashed, checked and appended to the target before the next is read, and the
heap is trimmed after each chunk (see :mod:`tracerflow.memory`).

Physics weights start here: with a ``generator_weight`` expression every event stores its
generator weight (after the ``negative_weights`` policy) as the event field
``generator_weight``, and the file's root attribute ``sum_generator_weight`` is their sum over
the events read (the entries the filters keep); without one it is the number of events. Resample
divides by the sum over a sample's files (see :mod:`tracerflow.resample.inputs`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tracerflow.columns import EVENT, EventBatch
from tracerflow.columns_scope import Scope
from tracerflow.events.entries import EntryFilter, select_entries
from tracerflow.events.remote import Access, is_url
from tracerflow.events.source import RootSource
from tracerflow.hashing import event_hashes
from tracerflow.io import events_file
from tracerflow.io.h5target import H5Writer
from tracerflow.memory import release_free_memory
from tracerflow.templates.event import EventTemplate, TemplateError
from tracerflow.templates.expressions import compile_expression


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
    non_finite: str = "fail",
    fill_value: float = 0.0,
    generator_weight: str | None = None,
    negative_weights: str = "keep",
    progress: Callable[[int, int], None] | None = None,
    template_key: str = "event.template",
    access: Access | None = None,
    overlay: Callable[[EventBatch], None] | None = None,
) -> EventStats:
    """Read ``tree`` of ``source`` through ``template`` and write the events target atomically;
    ``template_key`` is the config key of the template, for messages. Every branch is checked to
    exist and to hold what the template reads it as before anything is read. ``source`` may be a
    URL, read in place as ``access`` (the ``remote`` block) says. ``overlay`` (the background
    block's, :class:`tracerflow.background.overlay.Overlay`) adds background digits to each
    chunk's hits before derived fields are computed."""
    source = source if is_url(source) else Path(source)
    with RootSource(source, tree, threads, access) as root:
        branches = [b for b in template.branches() if b not in template.optional or root.has_branch(b)]
        root.require_branches(branches, template_key)
        roles = template.branch_roles()
        root.require_kinds({b: roles[b] for b in branches}, template_key)
        if root.num_entries == 0:
            raise InputError(f"{source}: tree {tree!r} is empty (0 entries)")
        entries = select_entries(root.num_entries, entry_filter, _run_event_reader(root, entry_filter))
        chunks = 0
        with H5Writer(
            out_path, events_file.SCHEMA, events_file.SCHEMA_VERSION, config_digest, created_by, compression,
            attrs={"sample": sample, "file": logical_file, "tree": tree, "entries_in_tree": root.num_entries},
        ) as writer:
            batches = _batches(root, template, branches, entries, chunk_size, source, (sample, logical_file, tree),
                               (non_finite, fill_value), overlay)
            weigh = GeneratorWeight(generator_weight, negative_weights, source)
            layout: EventBatch | None = None
            for batch, done in batches:
                weigh(batch)
                events_file.append_batch(writer, batch)
                if layout is None:
                    layout = batch.take(np.zeros(len(batch), bool))
                del batch
                release_free_memory()
                chunks += 1
                if progress:
                    progress(done, len(entries))
            if layout is None:
                layout = template.build(root.read(branches, entries[:0]), _empty_index(), overlay=overlay)
                weigh(layout)
            events_file.finish(writer, layout, [sample], [logical_file])
            writer.set_attrs("/", sum_generator_weight=weigh.total, generator_weight=generator_weight or "",
                             negative_weights=negative_weights)
    return EventStats(root.num_entries, len(entries), chunks)


def _batches(root: RootSource, template: EventTemplate, branches: list[str], entries: np.ndarray, chunk_size: int,
             source: Path | str, identity: tuple[str, str, str], non_finite: tuple[str, float],
             overlay: Callable[[EventBatch], None] | None = None) -> Iterator[tuple[EventBatch, int]]:
    """Read, check, hash and template ``entries`` chunk by chunk; yield each batch and entries done.

    Hashes need no uniqueness check here: within one file they are distinct by construction
    (see :mod:`tracerflow.hashing`); collisions across files are caught where files meet.
    """
    for lo in range(0, len(entries), chunk_size):
        chunk_entries = entries[lo:lo + chunk_size]
        arrays = root.read(branches, chunk_entries)
        arrays, chunk_entries = _non_finite(arrays, source, chunk_entries, *non_finite)
        index = {
            "hash": event_hashes(*identity, chunk_entries),
            "sample": np.zeros(len(chunk_entries), np.uint16),
            "file": np.zeros(len(chunk_entries), np.uint16),
            "entry": chunk_entries,
        }
        try:
            batch = template.build(arrays, index, sample_names=(identity[0],), overlay=overlay)
        except TemplateError as err:
            raise TemplateError(f"{source}: {err}") from None
        del arrays
        yield batch, min(lo + chunk_size, len(entries))
        del batch


class GeneratorWeight:
    """Adds each event's generator weight to its batch (an event-level ``expression``, with negative
    weights kept, made positive (``abs``) or set to 0 (``zero``)) and sums them in float64, as
    stored; without an expression the sum counts the events."""

    FIELD = "generator_weight"
    POLICIES = ("keep", "abs", "zero")

    def __init__(self, expression: str | None, negative: str, source: Path | str) -> None:
        if negative not in self.POLICIES:
            raise ValueError(f"negative_weights must be one of {self.POLICIES}, got {negative!r}")
        self.expression = compile_expression(expression) if expression else None
        self.text, self.negative, self.source = expression, negative, source
        self.total = 0.0

    def __call__(self, batch: EventBatch) -> None:
        if self.expression is None:
            self.total += len(batch)
            return
        if self.FIELD in batch.event:
            raise TemplateError(f"{self.source}: the event template declares {self.FIELD!r}, which "
                                "event.generator_weight fills; rename the template's field")
        try:
            values = np.asarray(self.expression(Scope(batch, EVENT)), dtype=np.float64)
        except ValueError as err:
            raise TemplateError(f"{self.source}: event.generator_weight: {err}") from None
        if values.shape != (len(batch),):
            raise TemplateError(f"{self.source}: event.generator_weight {self.text!r} is not one value per event")
        if self.negative == "abs":
            values = np.abs(values)
        elif self.negative == "zero":
            values = np.where(values < 0, 0.0, values)
        stored = values.astype(np.float32)
        batch.event[self.FIELD] = stored
        self.total += float(stored.sum(dtype=np.float64))


def _empty_index() -> dict[str, np.ndarray]:
    return {"hash": np.zeros(0, np.uint64), "sample": np.zeros(0, np.uint16),
            "file": np.zeros(0, np.uint16), "entry": np.zeros(0, np.int64)}


def _run_event_reader(root: RootSource, flt: EntryFilter):
    if not flt.needs_run_event:
        return None
    run_branch, event_branch = flt.run_event_branches
    root.require_branches([run_branch, event_branch], "event.run_event_branches")
    root.require_kinds({run_branch: (False, "the run number"), event_branch: (False, "the event number")},
                       "event.run_event_branches")

    def read(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arrays = root.read([run_branch, event_branch], entries)
        return np.asarray(arrays[run_branch]), np.asarray(arrays[event_branch])

    return read


NON_FINITE = ("fail", "keep", "drop", "fill")


def _non_finite(arrays: dict, source: Path | str, entries: np.ndarray, policy: str,
                fill: float) -> tuple[dict, np.ndarray]:
    """Apply ``event.non_finite`` to one chunk: ``fail`` raises :class:`InputError` naming the file,
    branch, entry and value of the first NaN or infinity; ``keep`` lets them through; ``drop`` leaves
    out the entries that hold one in any branch read; ``fill`` replaces them by ``fill``. Returns
    the arrays and entries to build.

    A sum is finite only when every term is (barring overflow, which the exact search then clears),
    so one cheap reduction clears a branch; only a non-finite sum pays for the search.
    """
    if policy not in NON_FINITE:
        raise ValueError(f"non_finite must be one of {NON_FINITE}, got {policy!r}")
    if policy == "keep":
        return arrays, entries
    import awkward as ak

    bad_entries = np.zeros(len(entries), bool)
    out = dict(arrays)
    for branch, values in arrays.items():
        jagged = not isinstance(values, np.ndarray) and values.ndim > 1
        flat = _flat_content(values) if jagged else np.asarray(values)
        if flat.dtype.kind != "f":
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            if np.isfinite(np.add.reduce(flat, dtype=np.float64)):
                continue
        if not (~np.isfinite(flat)).any():
            continue
        per_entry = (ak.to_numpy(ak.any(~np.isfinite(values), axis=-1)) if jagged
                     else ~np.isfinite(np.asarray(values)))
        if policy == "fail":
            first = int(np.argmax(per_entry))
            value = (ak.to_numpy(values[first])[~np.isfinite(ak.to_numpy(values[first]))][0] if jagged
                     else np.asarray(values)[first])
            raise InputError(
                f"{source}: branch {branch!r} holds {value} (first at entry {int(entries[first])}); fix the "
                "input or set event.non_finite: drop (leave such events out), fill or keep")
        if policy == "fill":
            out[branch] = (ak.where(np.isfinite(values), values, fill) if jagged
                           else np.where(np.isfinite(values), values, np.asarray(fill, dtype=flat.dtype)))
        bad_entries |= per_entry
    if policy == "drop" and bad_entries.any():
        keep = ~bad_entries
        out = {b: v[keep] for b, v in out.items()}
        entries = entries[keep]
    return out, entries


def _flat_content(values) -> np.ndarray:
    """All numbers of a jagged array: its content buffer when that holds exactly them (no copy)."""
    import awkward as ak

    layout = values.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(layout.content, ak.contents.NumpyArray):
        offsets = np.asarray(layout.offsets.data)
        if len(offsets) and offsets[0] == 0 and offsets[-1] == layout.content.length:
            return np.asarray(layout.content.data)
    return ak.to_numpy(ak.flatten(values, axis=None))
