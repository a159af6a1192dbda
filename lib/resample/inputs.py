"""Feed the selections files of every sample to :func:`tracerflow.resample.resample` in chunks."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.hashing import check_unique
from tracerflow.io import selections_file
from tracerflow.io.h5target import check_schema
from tracerflow.resample.spec import ResampleSpec
from tracerflow.resample.split import split_of
from tracerflow.resample.stream import Chunk


def selection_chunks(paths: Sequence[str | os.PathLike], columns: Sequence[str], chunk_size: int,
                     weight: str | None = None,
                     constants: Sequence[Mapping[str, int]] | None = None) -> Callable[[], Iterator[Chunk]]:
    """A re-iterable source of chunks: ``columns`` of ``/derived`` plus hash, item, source and row.

    ``source`` is the position of the file in ``paths`` and ``row`` the row in its
    ``/derived`` datasets, which is how WriteTrainSample finds the jet again; ``weight`` names
    the output passed on as the jets' input weight; ``constants[i]`` maps columns of ``paths[i]``
    that are not read but hold one value for every row (a class given by the file's sample). The
    first full pass also checks that no event hash appears in two files
    (:class:`~tracerflow.hashing.HashCollision`).
    """
    paths = [Path(p) for p in paths]
    constants = [dict(c) for c in constants] if constants is not None else [{} for _ in paths]
    wanted = list(dict.fromkeys([*columns, *([weight] if weight else [])]))
    checked = [False]

    def chunks() -> Iterator[Chunk]:
        seen: list[np.ndarray] = []
        for source, path in enumerate(paths):
            with h5py.File(path, "r") as f:
                check_schema(f, selections_file.SCHEMA, selections_file.SCHEMA_VERSION)
                fixed = constants[source]
                missing = [c for c in wanted if c not in fixed and f"derived/{c}" not in f]
                if missing:
                    raise KeyError(f"{path}: no selection output {missing[0]!r} (has {sorted(f['derived'])})")
                n = int(f["index/hash"].shape[0])
                if not checked[0]:
                    seen.append(np.unique(f["index/hash"][:]))
                for lo in range(0, n, chunk_size):
                    hi = min(n, lo + chunk_size)
                    chunk = {c: (np.full(hi - lo, fixed[c], np.int64) if c in fixed else f[f"derived/{c}"][lo:hi])
                             for c in columns}
                    chunk["hash"] = f["index/hash"][lo:hi]
                    chunk["item"] = f["index/item"][lo:hi]
                    chunk["source"] = np.full(hi - lo, source, np.int64)
                    chunk["row"] = np.arange(lo, hi, dtype=np.int64)
                    if weight:
                        chunk["weight"] = f[f"derived/{weight}"][lo:hi].astype(np.float32)
                    yield chunk
        if not checked[0]:
            check_unique(np.concatenate(seen) if seen else np.zeros(0, np.uint64), "selections of all samples")
            checked[0] = True

    return chunks


def only_split(chunks: Callable[[], Iterator[Chunk]], spec: ResampleSpec, split: str) -> Callable[[], Iterator[Chunk]]:
    """The jets of ``chunks`` that fall into ``split``: what one split's resampling needs.

    Splits are drawn per event hash and resampled independently, so the result for ``split``
    is the same as from all jets, at the cost of one of the splits instead of all of them.
    """
    index = spec.split_names.index(split)
    fractions = list(spec.splits.values())

    def filtered() -> Iterator[Chunk]:
        for chunk in chunks():
            keep = split_of(chunk["hash"], fractions, spec.assignment_seed) == index
            yield {name: values[keep] for name, values in chunk.items()}

    return filtered
