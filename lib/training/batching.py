"""Batches from a stream of row blocks, plainly or SortByNodes: jets of similar track count together, padding trimmed.

SortByNodes gathers a bucket of at least ``bucket_rows`` jets, orders it by the number of valid
tracks, cuts it into batches, shuffles the batches and trims each batch's track axis after the
last slot any of its jets uses, so set and graph models skip most padding. Memory stays at one
bucket.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

DEFAULT_BUCKET_ROWS = 32768
VALID, TRACKS = "valid", "tracks"


def track_counts(valid: np.ndarray) -> np.ndarray:
    """Number of valid tracks of each jet of a ``(n, T)`` mask."""
    return np.asarray(valid, dtype=bool).sum(axis=1)


def sorted_batches(counts: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Row indices of batches of ``batch_size`` jets of similar ``counts`` (the last may be short), shuffled by ``rng``.

    The sort is stable, so jets of equal count keep the (already shuffled) order they came in.
    """
    order = np.argsort(np.asarray(counts), kind="stable")
    batches = [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def trim_width(valid: np.ndarray) -> int:
    """Track slots a batch needs: up to its last slot that any jet uses, at least one."""
    used = np.flatnonzero(np.asarray(valid, dtype=bool).any(axis=0))
    return int(used[-1]) + 1 if len(used) else 1


def trim_tracks(arrays: dict[str, np.ndarray], keys: Sequence[str] = (TRACKS, VALID)) -> dict[str, np.ndarray]:
    """``arrays`` with the track axis of ``keys`` cut to :func:`trim_width` of ``arrays['valid']``."""
    width = trim_width(arrays[VALID])
    return {k: v[:, :width] if k in keys else v for k, v in arrays.items()}


def batch_rows(
    parts: Iterable[dict[str, np.ndarray]],
    batch_size: int,
    *,
    drop_last: bool = False,
    sort_by_nodes: bool = False,
    rng: np.random.Generator | None = None,
    bucket_rows: int = DEFAULT_BUCKET_ROWS,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` rows from ``parts`` (dicts of equal-length arrays, jets first).

    Plain: rows in the order they come. ``sort_by_nodes``: per bucket, batches of similar
    ``valid`` counts in an order shuffled by ``rng`` (sorted when None), tracks trimmed. Either
    way every row appears once and the batch count is that of plain batching.
    """
    threshold = max(bucket_rows, batch_size) if sort_by_nodes else batch_size
    pending: list[dict[str, np.ndarray]] = []
    n_pending = 0
    for part in parts:
        pending.append(part)
        n_pending += len(next(iter(part.values())))
        if n_pending < threshold:
            continue
        joined = concat_rows(pending)
        n_full = (n_pending // batch_size) * batch_size
        full = {k: v[:n_full] for k, v in joined.items()}
        yield from _sorted(full, batch_size, rng) if sort_by_nodes else _plain(full, batch_size)
        pending = [{k: v[n_full:] for k, v in joined.items()}]
        n_pending -= n_full
    if not n_pending:
        return
    rest = concat_rows(pending)
    batches = _sorted(rest, batch_size, rng) if sort_by_nodes else _plain(rest, batch_size)
    for batch in batches:
        if not drop_last or len(next(iter(batch.values()))) == batch_size:
            yield batch


def _plain(arrays: dict[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    n = len(next(iter(arrays.values())))
    for lo in range(0, n, batch_size):
        yield {k: v[lo:lo + batch_size] for k, v in arrays.items()}


def _sorted(arrays: dict[str, np.ndarray], batch_size: int,
            rng: np.random.Generator | None) -> Iterator[dict[str, np.ndarray]]:
    for rows in sorted_batches(track_counts(arrays[VALID]), batch_size, rng):
        yield trim_tracks({k: v[rows] for k, v in arrays.items()})


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join block pieces along the jet axis (no copy for a single piece)."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
