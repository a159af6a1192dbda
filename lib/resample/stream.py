"""Resample all jets in two streaming passes and shuffle each split's output.

Pass 1 histograms every labelled, in-range jet per (split, class, bin) (on the finer grid
for ``pdf`` with ``upscale_pdf`` > 1); from those
histograms :func:`tracerflow.resample.methods.plan_split` fixes each split's per-bin
ratios. Pass 2 reads the same chunks again and gives every jet its number of copies and its
weight from its own counter-based uniform, so memory is bounded by one chunk (plus the kept
jets, a few small integers each, where they are kept in memory) and the result does not depend
on how the jets were cut into chunks. Finally each split's rows are put in the order of its
:class:`Shuffle`: every output row (a copy of a jet) falls into one of ``n_buckets`` buckets by a
counter-based draw of (event hash, jet position, copy), and the rows of each bucket, taken in
(source, row, copy) order, are permuted with a generator seeded by (seed, "resample", "shuffle",
split, bucket); bucket 0 comes first. Independent uniform buckets and a uniform permutation
inside each make a uniform random permutation of all rows, and a bucket of ~``BUCKET_ROWS`` rows
is all that ever has to be in memory at once: :func:`resample_split` hands one split's kept
jets to a sink (a file on disk in the Resample task, :mod:`tracerflow.resample.bucketed`) and
returns its :class:`SplitSummary` without any per-row array, while :func:`resample` returns every
split's rows in memory, in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from tracerflow.hashing import splitmix64
from tracerflow.resample.binning import Grid
from tracerflow.resample.methods import SplitPlan, countup_copies, plan_split, poisson_from_uniform
from tracerflow.resample.spec import ResampleSpec
from tracerflow.resample.split import GOLDEN, jet_salts, jet_uniforms, split_of, unit_uniform
from tracerflow.seeding import derive_seed, rng_for

Chunk = Mapping[str, np.ndarray]
"""Columns of a block of jets: every resampling variable, the label column, ``hash`` (uint64
event hash), ``item`` (jet position in its event), ``source`` (which selections file),
``row`` (row in that file) and, optionally, ``weight`` (multiplied into the output weight)."""

_INDEX_COLUMNS = ("hash", "item", "source", "row")


#: Output rows per bucket of the shuffle (:class:`Shuffle`): what a writer holds in memory at once.
BUCKET_ROWS = 1 << 17
#: Kept jets per block in which the per-class weight sums are added up (:func:`class_weight_sums`).
SUM_BLOCK = 1 << 16
#: What a split's kept jets carry, one row per jet with at least one copy (:class:`KeptSink`).
KEPT_COLUMNS = ("source", "row", "hash", "item", "label", "weight", "copies")
KEPT_DTYPES = {"source": np.int32, "row": np.int64, "hash": np.uint64, "item": np.int32,
               "label": np.int16, "weight": np.float32, "copies": np.int32}


@dataclass(frozen=True)
class Shuffle:
    """The order of the ``n_rows`` output rows of split ``split`` (see the module docstring).

    A row is a copy of a jet: its bucket comes from (event hash, jet position, copy) alone, so it
    does not depend on which chunk or block the jet came in; within a bucket the rows are taken
    in (source, row, copy) order and permuted by :meth:`permutation`.
    """

    seed: int
    split: str
    n_rows: int
    bucket_rows: int = BUCKET_ROWS

    @property
    def n_buckets(self) -> int:
        return max(1, -(-int(self.n_rows) // int(self.bucket_rows)))

    def buckets(self, hashes: np.ndarray, items: np.ndarray, copies: np.ndarray) -> np.ndarray:
        """The bucket (int64 in ``[0, n_buckets)``) of each output row."""
        salt = np.uint64(derive_seed(self.seed, "resample", "bucket", self.split))
        x = splitmix64(np.asarray(hashes, dtype=np.uint64) ^ salt)
        with np.errstate(over="ignore"):
            x += np.asarray(items).astype(np.uint64) * GOLDEN
            x = splitmix64(x)
            x += np.asarray(copies).astype(np.uint64) * GOLDEN
        bucket = (unit_uniform(splitmix64(x)) * self.n_buckets).astype(np.int64)
        return np.minimum(bucket, self.n_buckets - 1)

    def permutation(self, bucket: int, n: int) -> np.ndarray:
        """The order of the ``n`` rows of ``bucket`` (given in (source, row, copy) order)."""
        return rng_for(self.seed, "resample", "shuffle", self.split, int(bucket)).permutation(n)

    def order(self, source: np.ndarray, row: np.ndarray, hashes: np.ndarray, items: np.ndarray,
              copies: np.ndarray) -> np.ndarray:
        """The final order of output rows given in any order: positions into them, bucket by bucket."""
        bucket = self.buckets(hashes, items, copies)
        natural = np.lexsort((copies, row, source, bucket))
        bounds = np.searchsorted(bucket[natural], np.arange(self.n_buckets + 1))
        parts = [natural[lo:hi][self.permutation(b, hi - lo)] for b, (lo, hi) in enumerate(zip(bounds, bounds[1:]))]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def expand_copies(copies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For jets with ``copies`` copies each: the jet (position) and copy number of every output row."""
    copies = np.asarray(copies, dtype=np.int64)
    parent = np.repeat(np.arange(len(copies)), copies)
    first = np.cumsum(copies) - copies
    return parent, (np.arange(len(parent)) - first[parent]).astype(np.int32)


def class_weight_sums(blocks: Iterable[Mapping[str, np.ndarray]], n_classes: int) -> np.ndarray:
    """Per class, the summed weight of the output rows of kept jets (``copies`` times ``weight``),
    added up block by block (blocks of :data:`SUM_BLOCK` jets in (source, row) order make the sum
    the same however the jets were chunked)."""
    sums = np.zeros(n_classes)
    for block in blocks:
        weight = np.asarray(block["copies"], np.float64) * np.asarray(block["weight"], np.float64)
        sums += np.bincount(np.asarray(block["label"], np.int64), weights=weight, minlength=n_classes)
    return sums


def balance_factors(sums: np.ndarray, target: int) -> np.ndarray:
    """Per class, the factor that brings its summed weight to the target class's (1 where either sum
    is not positive)."""
    ok = (sums > 0) & (sums[target] > 0)
    return np.where(ok, sums[target] / np.where(ok, sums, 1.0), 1.0)


class KeptSink(Protocol):
    """Where pass 2 puts a split's kept jets: :data:`KEPT_COLUMNS`, a chunk's jets at a time."""

    def add(self, columns: Mapping[str, np.ndarray]) -> None: ...


class MemorySink:
    """Kept jets held in memory (what :func:`resample` uses)."""

    def __init__(self) -> None:
        self.lists: dict[str, list[np.ndarray]] = {c: [] for c in KEPT_COLUMNS}

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        for c in KEPT_COLUMNS:
            self.lists[c].append(columns[c])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every kept jet, in (source, row) order."""
        cols = {c: (np.concatenate(v) if v else np.zeros(0, KEPT_DTYPES[c])) for c, v in self.lists.items()}
        if not _is_sorted(cols["source"], cols["row"]):
            order = np.lexsort((cols["row"], cols["source"]))
            cols = {c: v[order] for c, v in cols.items()}
        return cols


def blocks_of(columns: Mapping[str, np.ndarray], size: int = SUM_BLOCK) -> Iterator[dict[str, np.ndarray]]:
    """``columns`` (equal lengths) in consecutive blocks of ``size`` rows."""
    n = len(next(iter(columns.values()))) if columns else 0
    for lo in range(0, n, size):
        yield {c: v[lo:lo + size] for c, v in columns.items()}


@dataclass(eq=False)
class SplitSummary:
    """What one split's resampling decided, without its rows: counts, histograms and the plan.

    ``n_rows`` output rows, ``after`` of them per class, ``weighted_after`` their summed weight per
    class and ``balance`` the factor each class's weights were multiplied by (1 without
    ``balance_weights``). Histograms (classes, *grid shape), in-range jets only: ``hist_before``
    (jets), ``hist_after`` (output rows), ``hist_after_weighted`` (sum of resampling weights of
    output rows) and ``hist_after_sumw2`` (sum over jets of (copies * weight)^2, the variance
    estimate that accounts for duplicates). Per class: ``available`` (labelled jets of the
    split), ``out_of_range``, ``unique`` (jets with at least one copy), ``requested``,
    ``clipped_bins``, ``empty_bins``. ``untouched`` splits keep every labelled jet once,
    out-of-range ones included; they and ``none`` have ``sampling_fraction`` NaN. ``shuffle``
    fixes the rows' order.
    """

    split: str
    resampled: bool
    method: str
    classes: tuple[str, ...]
    n_rows: int
    after: np.ndarray
    weighted_after: np.ndarray
    balance: np.ndarray
    shuffle: Shuffle
    hist_before: np.ndarray
    hist_after: np.ndarray
    hist_after_weighted: np.ndarray
    hist_after_sumw2: np.ndarray
    ratio: np.ndarray
    available: np.ndarray
    out_of_range: np.ndarray
    unique: np.ndarray
    unlabelled: int
    requested: np.ndarray
    sampling_fraction: float
    clipped_bins: np.ndarray
    empty_bins: np.ndarray
    ratio_grid_bins: int

    def __len__(self) -> int:
        return int(self.n_rows)


@dataclass(eq=False)
class ResampleResult(SplitSummary):
    """One split's summary and its rows in final order (:class:`Shuffle`): ``source``, ``row``,
    ``hash``, ``item``, ``label`` (class index), ``weight`` (float32: importance weight for
    ``weighting``, else 1, times the input weight, times the class's ``balance``) and ``copy`` (0 for
    a jet's first copy, 1.. for duplicates)."""

    source: np.ndarray
    row: np.ndarray
    hash: np.ndarray
    item: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    copy: np.ndarray


@dataclass(frozen=True, eq=False)
class _Jets:
    split: np.ndarray
    cls: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray


class _Layout:
    """Everything about the spec that both passes look up per chunk."""

    def __init__(self, spec: ResampleSpec) -> None:
        self.spec = spec
        self.grid = Grid.from_variables(spec.variables)
        self.factor = spec.upscale_pdf if spec.method == "pdf" else 1
        self.n_splits = len(spec.splits)
        self.n_classes = len(spec.classes)
        self.n_bins = self.grid.size
        self.n_eval = self.n_bins * self.factor ** len(self.grid.shape)
        self.parent = self.grid.fine_parent(self.factor) if self.factor > 1 else None
        self.fractions = list(spec.splits.values())
        self.resampled = np.array([spec.is_resampled(s) for s in spec.split_names])
        self.salts = jet_salts(spec.seed, spec.split_names)
        self.label_values = list(spec.classes.values())

    def coarsen(self, hist: np.ndarray) -> np.ndarray:
        """Histograms (splits, classes, evaluation cells) summed into (splits, classes, *bin grid)."""
        S, C = hist.shape[:2]
        if self.parent is None:
            return hist.reshape((S, C) + self.grid.shape)
        rows = hist.reshape(S * C, -1)
        out = np.stack([np.bincount(self.parent, weights=r, minlength=self.n_bins) for r in rows])
        return np.rint(out).astype(np.int64).reshape((S, C) + self.grid.shape)

    def classify(self, chunk: Chunk) -> _Jets:
        """Split, class index (-1: unlabelled) and cells (-1: out of range) of each jet."""
        spec = self.spec
        _check_chunk(chunk, spec)
        split = split_of(chunk["hash"], self.fractions, spec.assignment_seed)
        labels = np.asarray(chunk[spec.label])
        cls = np.full(labels.shape, -1, dtype=np.int64)
        for index, value in enumerate(self.label_values):
            cls[labels == value] = index
        coarse, fine = self.grid.locate(chunk, self.factor)
        return _Jets(split, cls, coarse, fine)


def resample(spec: ResampleSpec, chunks: Callable[[], Iterable[Chunk]],
             bucket_rows: int = BUCKET_ROWS) -> dict[str, ResampleResult]:
    """Decide which jets, how many copies and which weights go into each split; shuffle each split.

    ``chunks`` is called twice and must yield the same jets both times (checked: the pass-2
    histograms must equal the pass-1 ones); chunk boundaries and chunk order do not change
    the result. Every split's rows are held in memory; :func:`resample_split` leaves them to a sink.
    """
    sinks = [MemorySink() for _ in spec.split_names]
    layout, parts = _passes(spec, chunks, sinks)
    results = {}
    for k, name in enumerate(spec.split_names):
        kept = sinks[k].arrays()
        summary = _summary(layout, k, name, parts, class_weight_sums(blocks_of(kept), layout.n_classes), bucket_rows)
        results[name] = _finish_split(summary, kept)
    return results


def resample_split(spec: ResampleSpec, chunks: Callable[[], Iterable[Chunk]], split: str, sink: KeptSink,
                   sums: Callable[[], Iterable[Mapping[str, np.ndarray]]],
                   bucket_rows: int = BUCKET_ROWS) -> SplitSummary:
    """Resample as :func:`resample` does, but hand split ``split``'s kept jets (:data:`KEPT_COLUMNS`, one
    row per jet with at least one copy, in the order the chunks bring them) to ``sink`` and return
    its summary only; jets of other splits are dropped. ``sums()`` reads the sink's jets back in
    blocks of :data:`SUM_BLOCK` for the per-class weight sums. Memory is bounded by a chunk."""
    sinks: list[KeptSink | None] = [None] * len(spec.split_names)
    k = spec.split_names.index(split)
    sinks[k] = sink
    layout, parts = _passes(spec, chunks, sinks)
    return _summary(layout, k, split, parts, class_weight_sums(sums(), layout.n_classes), bucket_rows)


@dataclass
class _Parts:
    """What both passes found, for every split."""

    hist: np.ndarray
    out_of_range: np.ndarray
    unlabelled: np.ndarray
    plans: dict[int, SplitPlan]
    pass2: "_Pass2"


def _passes(spec: ResampleSpec, chunks: Callable[[], Iterable[Chunk]],
            sinks: Sequence[KeptSink | None]) -> tuple["_Layout", _Parts]:
    """Pass 1, the plans of the resampled splits, pass 2 (kept jets of split k to ``sinks[k]``)."""
    layout = _Layout(spec)
    fine_hist, out_of_range, unlabelled = _histogram_pass(layout, chunks)
    hist = layout.coarsen(fine_hist)
    plans = {
        k: plan_split(hist[k], layout.grid, spec.target_index, spec.method, spec.sampling_fraction,
                      spec.max_upsampling_ratio, layout.factor, fine_hist[k] if layout.factor > 1 else None)
        for k in range(layout.n_splits) if layout.resampled[k]
    }
    pass2 = _copy_pass(layout, chunks, plans, sinks)
    if not np.array_equal(pass2.check, hist):
        raise RuntimeError("resample: chunks() yielded different jets in its two passes")
    return layout, _Parts(hist, out_of_range, unlabelled, plans, pass2)


def _histogram_pass(layout: _Layout, chunks: Callable[[], Iterable[Chunk]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 1: jets per (split, class, cell of the evaluation grid), out-of-range jets per (split, class), unlabelled per split."""
    S, C, B = layout.n_splits, layout.n_classes, layout.n_eval
    hist = np.zeros(S * C * B + 1, np.int64)
    out_of_range = np.zeros(S * C + 1, np.int64)
    unlabelled = np.zeros(S, np.int64)
    for chunk in chunks():
        jets = layout.classify(chunk)
        labelled = jets.cls >= 0
        in_range = labelled & (jets.coarse >= 0)
        pair = jets.split.astype(np.int64) * C + jets.cls
        hist += np.bincount(np.where(in_range, pair * B + jets.fine, S * C * B), minlength=S * C * B + 1)
        out_of_range += np.bincount(np.where(labelled & ~in_range, pair, S * C), minlength=S * C + 1)
        unlabelled += np.bincount(jets.split[~labelled], minlength=S)
    return hist[:-1].reshape(S, C, B), out_of_range[:-1].reshape(S, C), unlabelled


@dataclass
class _Pass2:
    """What pass 2 accumulates: histograms after resampling and the kept jets per split."""

    check: np.ndarray
    after: np.ndarray
    weighted: np.ndarray
    sumw2: np.ndarray
    unique: np.ndarray
    rows: np.ndarray


def _copy_pass(layout: _Layout, chunks: Callable[[], Iterable[Chunk]], plans: Mapping[int, SplitPlan],
               sinks: Sequence[KeptSink | None]) -> _Pass2:
    """Pass 2: copies and weight of every jet, histograms after resampling, kept jets of split k to
    ``sinks[k]`` (None: not kept)."""
    spec = layout.spec
    S, C, B = layout.n_splits, layout.n_classes, layout.n_bins
    target = spec.target_index
    n_eval = layout.n_eval
    table = np.ones((S, C, n_eval))
    for k, plan in plans.items():
        table[k] = plan.table
    table = table.ravel()
    size = S * C * B + 1
    acc = _Pass2(np.zeros(size, np.int64), np.zeros(size), np.zeros(size), np.zeros(size),
                 np.zeros(S * C + 1, np.int64), np.zeros(S * C + 1, np.int64))
    for chunk in chunks():
        jets = layout.classify(chunk)
        labelled = jets.cls >= 0
        in_range = labelled & (jets.coarse >= 0)
        resampled = layout.resampled[jets.split]
        copies = np.where(resampled, in_range, labelled).astype(np.int64)
        weight = np.ones(len(copies))
        if spec.method != "none":
            sel = np.flatnonzero(in_range & resampled)
            pair = jets.split[sel].astype(np.int64) * C + jets.cls[sel]
            value = table[pair * n_eval + jets.fine[sel]]
            if spec.method == "weighting":
                weight[sel] = value
            else:
                if spec.method == "pdf":
                    others = jets.cls[sel] != target
                    sel, value = sel[others], value[others]
                u = jet_uniforms(chunk["hash"][sel], chunk["item"][sel], layout.salts[jets.split[sel]])
                if spec.method == "countup":
                    copies[sel] = countup_copies(u, value)
                else:
                    copies[sel] = poisson_from_uniform(u, value)
        pair = jets.split.astype(np.int64) * C + jets.cls
        key = np.where(in_range, pair * B + jets.coarse, size - 1)
        contribution = copies * weight
        acc.check += np.bincount(key, minlength=size)
        acc.after += np.bincount(key, weights=copies, minlength=size)
        acc.weighted += np.bincount(key, weights=contribution, minlength=size)
        acc.sumw2 += np.bincount(key, weights=contribution * contribution, minlength=size)
        kept = copies > 0
        acc.unique += np.bincount(np.where(kept, pair, S * C), minlength=S * C + 1)
        acc.rows += np.bincount(np.where(kept, pair, S * C), weights=copies, minlength=S * C + 1).astype(np.int64)
        _keep(sinks, chunk, jets, copies, weight, np.flatnonzero(kept))
    shape = (S, C) + layout.grid.shape
    acc.check = acc.check[:-1].reshape(shape)
    acc.after = acc.after[:-1].reshape(shape)
    acc.weighted = acc.weighted[:-1].reshape(shape)
    acc.sumw2 = acc.sumw2[:-1].reshape(shape)
    acc.unique = acc.unique[:-1].reshape(S, C)
    acc.rows = acc.rows[:-1].reshape(S, C)
    return acc


def _keep(sinks: Sequence[KeptSink | None], chunk: Chunk, jets: _Jets, copies: np.ndarray,
          weight: np.ndarray, rows: np.ndarray) -> None:
    """Hand the jets ``rows`` of a chunk (those with at least one copy) to their split's sink."""
    split = jets.split[rows]
    if "weight" in chunk:
        weight = weight * np.asarray(chunk["weight"], dtype=np.float64)
    for k, sink in enumerate(sinks):
        if sink is None:
            continue
        sel = rows[split == k] if len(sinks) > 1 else rows
        if not sel.size:
            continue
        sink.add({
            "source": np.asarray(chunk["source"])[sel].astype(np.int32),
            "row": np.asarray(chunk["row"])[sel].astype(np.int64),
            "hash": np.asarray(chunk["hash"])[sel].astype(np.uint64),
            "item": np.asarray(chunk["item"])[sel].astype(np.int32),
            "label": jets.cls[sel].astype(np.int16),
            "weight": weight[sel].astype(np.float32),
            "copies": copies[sel].astype(np.int32),
        })


def _summary(layout: _Layout, k: int, name: str, parts: _Parts, sums: np.ndarray, bucket_rows: int) -> SplitSummary:
    """Split ``k``'s summary from both passes and its per-class weight sums (:func:`class_weight_sums`)."""
    spec = layout.spec
    hist, out_of_range, plan, acc = parts.hist[k], parts.out_of_range[k], parts.plans.get(k), parts.pass2
    C = layout.n_classes
    balance = np.ones(C)
    if spec.balance_weights and layout.resampled[k]:
        balance = balance_factors(sums, spec.target_index)
    available = hist.reshape(C, -1).sum(axis=1) + out_of_range
    if plan is None:
        ratio = (hist > 0).astype(np.float64)
        requested = available.astype(np.float64)
        fraction = float("nan")
        clipped = empty = np.zeros(C, np.int64)
        grid_bins = layout.n_bins
    else:
        ratio, requested, fraction = plan.ratio, plan.requested, plan.sampling_fraction
        clipped, empty = plan.clipped_bins, plan.empty_bins
        grid_bins = layout.n_bins * plan.factor ** len(layout.grid.shape)
    n_rows = int(acc.rows[k].sum())
    return SplitSummary(
        split=name, resampled=plan is not None, method=spec.method if plan is not None else "none",
        classes=spec.class_names, n_rows=n_rows, after=acc.rows[k].copy(), weighted_after=sums * balance,
        balance=balance, shuffle=Shuffle(spec.seed, name, n_rows, bucket_rows), hist_before=hist.copy(),
        hist_after=np.rint(acc.after[k]).astype(np.int64), hist_after_weighted=acc.weighted[k],
        hist_after_sumw2=acc.sumw2[k], ratio=ratio, available=available, out_of_range=out_of_range.copy(),
        unique=acc.unique[k], unlabelled=int(parts.unlabelled[k]), requested=requested, sampling_fraction=fraction,
        clipped_bins=clipped, empty_bins=empty, ratio_grid_bins=grid_bins,
    )


def _finish_split(summary: SplitSummary, kept: Mapping[str, np.ndarray]) -> ResampleResult:
    """Expand the kept jets (in (source, row) order) into their copies and put them in the shuffle's order."""
    parent, copy = expand_copies(kept["copies"])
    cols = {c: kept[c][parent] for c in ("source", "row", "hash", "item", "label", "weight")}
    order = summary.shuffle.order(cols["source"], cols["row"], cols["hash"], cols["item"], copy)
    out = {c: v[order] for c, v in cols.items()}
    out["weight"] = (out["weight"].astype(np.float64) * summary.balance[out["label"]]).astype(np.float32)
    fields = {f: getattr(summary, f) for f in SplitSummary.__dataclass_fields__}
    return ResampleResult(**fields, copy=copy[order], **out)


class EmptySplit(ValueError):
    """A split that cannot be trained or resampled on: no rows, or no rows of the target class."""


def check_split(result: SplitSummary, spec: ResampleSpec) -> list[str]:
    """Stop on a split nothing can be learnt from; return warnings for classes it lacks.

    Raises :class:`EmptySplit` when a resampled split has no labelled rows (the selection passed
    none, or none carries a class) or none of the target class, which the resampling follows. A
    class missing from a split otherwise is a warning: Predict then reports its metrics as null.
    """
    where = f"resample split {result.split!r}"
    available = np.asarray(result.available)
    if result.resampled and not available.sum():
        extra = f" ({result.unlabelled} rows carry no class of resample.classes)" if result.unlabelled else ""
        raise EmptySplit(f"{where}: no labelled rows{extra}; check the cutflow of the selections and "
                         "resample.classes")
    if result.resampled and not available[spec.target_index]:
        raise EmptySplit(f"{where}: the target class {spec.target!r} has no rows, and the other classes "
                         "follow its distribution; pick another resample.target or check its samples")
    return [f"{where}: class {name!r} has no rows" for name, n in zip(spec.class_names, available) if not n]


def balanced_weights(weight: np.ndarray, label: np.ndarray, target: int, n_classes: int) -> np.ndarray:
    """``weight`` scaled per class so that every class sums to the target class's total weight (a class
    whose total is not positive is left as it is): class balance on top of physics weights."""
    factor = balance_factors(np.bincount(label, weights=weight.astype(np.float64), minlength=n_classes), target)
    return (weight.astype(np.float64) * factor[label]).astype(np.float32)


def _is_sorted(source: np.ndarray, row: np.ndarray) -> bool:
    """Whether (source, row) is non-decreasing, so the sort can be skipped."""
    if len(source) < 2:
        return True
    ds = np.diff(source.astype(np.int64))
    return bool(np.all((ds > 0) | ((ds == 0) & (np.diff(row) >= 0))))


def _check_chunk(chunk: Chunk, spec: ResampleSpec) -> int:
    """Number of jets in ``chunk``; a KeyError or ValueError if a column is missing or misaligned."""
    names = list(_INDEX_COLUMNS) + [spec.label] + list(spec.variables)
    if "weight" in chunk:
        names.append("weight")
    lengths = {}
    for name in names:
        if name not in chunk:
            raise KeyError(f"resample: chunk has no column {name!r} (columns: {', '.join(chunk)})")
        lengths[name] = len(chunk[name])
    if len(set(lengths.values())) > 1:
        raise ValueError(f"resample: chunk columns differ in length: {lengths}")
    return next(iter(lengths.values()))
