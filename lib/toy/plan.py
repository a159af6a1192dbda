"""Which toy files a sample has and which events each holds: numpy and the seed streams only,
so that a config can list a generated sample's files without the generator's heavy imports.

Jet multiplicities come from one per-sample stream that any file can replay
(:func:`file_multiplicities`), so files can be produced in any order or in parallel.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..seeding import rng_for
from .processes import Process, draw_multiplicities, get_process

MULTIPLICITY_DRAW = 1 << 16


@dataclass(frozen=True)
class FilePlan:
    """One output file: its name, index, events [first_event, first_event + n_events) and jet count."""

    name: str
    index: int
    n_events: int
    first_event: int
    n_jets: int


def _multiplicity_chunks(process: Process, seed: int, sample: str) -> Iterator[np.ndarray]:
    """Yield the sample's jet-multiplicity stream in fixed-size chunks, always the same values."""
    rng = rng_for(seed, "toy", sample, "multiplicity")
    while True:
        yield draw_multiplicities(process, rng, MULTIPLICITY_DRAW)


def _first_multiplicities(process: Process, seed: int, sample: str, n_events: int) -> np.ndarray:
    """Return the first ``n_events`` values of the multiplicity stream."""
    chunks: list[np.ndarray] = []
    total = 0
    for chunk in _multiplicity_chunks(process, seed, sample):
        if total >= n_events:
            break
        chunks.append(chunk)
        total += len(chunk)
    return np.concatenate(chunks)[:n_events] if chunks else np.zeros(0, dtype=np.int64)


def plan_files(process: str, n_jets: int, events_per_file: int, seed: int, sample: str) -> list[FilePlan]:
    """Split a sample of exactly ``n_jets`` jets into files of at most ``events_per_file`` events.

    Draws event multiplicities until ``n_jets`` is reached; the last event is truncated if needed.
    """
    if n_jets < 1 or events_per_file < 1:
        raise ValueError("n_jets and events_per_file must be positive")
    proc = get_process(process)
    chunks: list[np.ndarray] = []
    total = 0
    for chunk in _multiplicity_chunks(proc, seed, sample):
        chunks.append(chunk)
        total += int(chunk.sum())
        if total >= n_jets:
            break
    cumulative = np.cumsum(np.concatenate(chunks))
    n_events = int(np.searchsorted(cumulative, n_jets)) + 1
    jets_before = np.concatenate([[0], np.minimum(cumulative[:n_events], n_jets)])
    plans = []
    for index, first in enumerate(range(0, n_events, events_per_file)):
        last = min(first + events_per_file, n_events)
        plans.append(
            FilePlan(
                name=f"{sample}_{index:04d}.root",
                index=index,
                n_events=last - first,
                first_event=first,
                n_jets=int(jets_before[last] - jets_before[first]),
            )
        )
    return plans


def file_multiplicities(process: str, plan_entry: FilePlan, seed: int, sample: str) -> np.ndarray:
    """Return the jet multiplicity of each event of one planned file (last event truncated as planned)."""
    proc = get_process(process)
    counts = _first_multiplicities(proc, seed, sample, plan_entry.first_event + plan_entry.n_events)
    counts = counts[plan_entry.first_event :].copy()
    excess = int(counts.sum()) - plan_entry.n_jets
    if excess < 0 or excess >= counts[-1]:
        raise ValueError(f"plan entry {plan_entry} does not match the multiplicity stream of {sample!r}")
    counts[-1] -= excess
    return counts
