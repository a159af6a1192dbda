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
                     constants: Sequence[Mapping[str, int]] | None = None,
                     physics: Sequence[float] | None = None) -> Callable[[], Iterator[Chunk]]:
    """A re-iterable source of chunks: ``columns`` of ``/derived`` plus hash, item, source and row.

    ``source`` is the position of the file in ``paths`` and ``row`` the row in its
    ``/derived`` datasets, which is how WriteTrainSample finds the jet again; ``weight`` names
    the output passed on as the jets' input weight; ``constants[i]`` maps columns of ``paths[i]``
    that are not read but hold one value for every row (a class given by the file's sample);
    with ``physics`` (one factor per path, see :func:`physics_scales`) the input weight is also
    multiplied by each row's generator weight and its file's factor. The
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
                    if physics is not None:
                        scaled = f[selections_file.GENERATOR_WEIGHT_PATH][lo:hi].astype(np.float64) * physics[source]
                        chunk["weight"] = (chunk["weight"] * scaled if weight else scaled).astype(np.float32)
                    yield chunk
        if not checked[0]:
            check_unique(np.concatenate(seen) if seen else np.zeros(0, np.uint64), "selections of all samples")
            checked[0] = True

    return chunks


def physics_scales(samples: Sequence[str], sums: Sequence[float], cross_sections: Mapping[str, float | None],
                   luminosity: float | None) -> list[float]:
    """Per source file (``samples[i]`` its sample, ``sums[i]`` its events file's
    ``sum_generator_weight``), the factor that makes a row's weight ``xsec * lumi * w / sum(w)``,
    the sum running over every file of the sample; 1 for samples without a cross section (their
    rows weigh ``w``)."""
    totals: dict[str, float] = {}
    for sample, total in zip(samples, sums):
        totals[sample] = totals.get(sample, 0.0) + float(total)
    factors = {}
    for sample, total in totals.items():
        xsec = cross_sections.get(sample)
        if xsec is None:
            factors[sample] = 1.0
            continue
        if luminosity is None:
            raise ValueError(f"samples.{sample}.cross_section: needs project.luminosity")
        if not total > 0:
            raise ValueError(f"samples.{sample}.cross_section: the sum of the sample's generator weights is "
                             f"{total:g}; a cross section needs a positive sum (event.negative_weights: abs or zero?)")
        factors[sample] = xsec * luminosity / total
    return [factors[s] for s in samples]


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
