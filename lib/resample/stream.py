"""Resample all jets in two streaming passes and shuffle each split's output.

Pass 1 histograms every labelled, in-range jet per (split, class, bin) (on the finer grid
for ``pdf`` with ``upscale_pdf`` > 1); from those
histograms :func:`tracerflow.resample.methods.plan_split` fixes each split's per-bin
ratios. Pass 2 reads the same chunks again and gives every jet its number of copies and its
weight from its own counter-based uniform, so memory is bounded by one chunk plus the
output index (a few small integers per output row) and the result does not depend on how
the jets were cut into chunks. Finally each split's rows are put in (source, row, copy)
order and permuted with a generator seeded by (seed, "resample", "shuffle", split).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from tracerflow.resample.binning import Grid
from tracerflow.resample.methods import SplitPlan, countup_copies, plan_split, poisson_from_uniform
from tracerflow.resample.spec import ResampleSpec
from tracerflow.resample.split import jet_salts, jet_uniforms, split_of
from tracerflow.seeding import rng_for

Chunk = Mapping[str, np.ndarray]
"""Columns of a block of jets: every resampling variable, the label column, ``hash`` (uint64
event hash), ``item`` (jet position in its event), ``source`` (which selections file),
``row`` (row in that file) and, optionally, ``weight`` (multiplied into the output weight)."""

_INDEX_COLUMNS = ("hash", "item", "source", "row")


@dataclass(eq=False)
class ResampleResult:
    """The output of one split: one row per copy, shuffled, and the histograms behind it.

    Row arrays: ``source``, ``row``, ``hash``, ``item``, ``label`` (class index), ``weight``
    (float32: importance weight for ``weighting``, else 1, times the input weight) and
    ``copy`` (0 for a jet's first copy, 1.. for duplicates). Histograms (classes, *grid
    shape), in-range jets only: ``hist_before`` (jets), ``hist_after`` (output rows),
    ``hist_after_weighted`` (sum of resampling weights of output rows) and
    ``hist_after_sumw2`` (sum over jets of (copies * weight)^2, the variance estimate that
    accounts for duplicates). Per class: ``available`` (labelled jets of the split),
    ``out_of_range``, ``unique`` (jets with at least one copy), ``requested``,
    ``clipped_bins``, ``empty_bins``. ``untouched`` splits keep every labelled jet once,
    out-of-range ones included; they and ``none`` have ``sampling_fraction`` NaN.
    """

    split: str
    resampled: bool
    method: str
    classes: tuple[str, ...]
    source: np.ndarray
    row: np.ndarray
    hash: np.ndarray
    item: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    copy: np.ndarray
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
        return len(self.row)

    @property
    def after(self) -> np.ndarray:
        """Output rows per class (out-of-range jets of untouched splits included)."""
        return np.bincount(self.label, minlength=len(self.classes)).astype(np.int64)


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


def resample(spec: ResampleSpec, chunks: Callable[[], Iterable[Chunk]]) -> dict[str, ResampleResult]:
    """Decide which jets, how many copies and which weights go into each split; shuffle each split.

    ``chunks`` is called twice and must yield the same jets both times (checked: the pass-2
    histograms must equal the pass-1 ones); chunk boundaries and chunk order do not change
    the result.
    """
    layout = _Layout(spec)
    fine_hist, out_of_range, unlabelled = _histogram_pass(layout, chunks)
    hist = layout.coarsen(fine_hist)
    plans = {
        k: plan_split(hist[k], layout.grid, spec.target_index, spec.method, spec.sampling_fraction,
                      spec.max_upsampling_ratio, layout.factor, fine_hist[k] if layout.factor > 1 else None)
        for k in range(layout.n_splits) if layout.resampled[k]
    }
    pass2 = _copy_pass(layout, chunks, plans)
    if not np.array_equal(pass2.check, hist):
        raise RuntimeError("resample: chunks() yielded different jets in its two passes")
    results = {}
    for k, name in enumerate(spec.split_names):
        results[name] = _finish_split(layout, k, name, hist[k], out_of_range[k], int(unlabelled[k]), plans.get(k), pass2)
    return results


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
    kept: list[dict[str, list[np.ndarray]]]


def _copy_pass(layout: _Layout, chunks: Callable[[], Iterable[Chunk]], plans: Mapping[int, SplitPlan]) -> _Pass2:
    """Pass 2: copies and weight of every jet, histograms after resampling, kept jets per split."""
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
                 np.zeros(S * C + 1, np.int64), [{c: [] for c in _OUT_COLUMNS} for _ in range(S)])
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
        _keep(acc.kept, chunk, jets, copies, weight, np.flatnonzero(kept))
    shape = (S, C) + layout.grid.shape
    acc.check = acc.check[:-1].reshape(shape)
    acc.after = acc.after[:-1].reshape(shape)
    acc.weighted = acc.weighted[:-1].reshape(shape)
    acc.sumw2 = acc.sumw2[:-1].reshape(shape)
    acc.unique = acc.unique[:-1].reshape(S, C)
    return acc


_OUT_COLUMNS = ("source", "row", "hash", "item", "label", "weight", "copies")
_OUT_DTYPES = {"source": np.int32, "row": np.int64, "hash": np.uint64, "item": np.int32,
               "label": np.int16, "weight": np.float32, "copies": np.int32}


def _keep(kept: list[dict[str, list[np.ndarray]]], chunk: Chunk, jets: _Jets, copies: np.ndarray,
          weight: np.ndarray, rows: np.ndarray) -> None:
    """Append the jets ``rows`` of a chunk (those with at least one copy) to their split's lists."""
    split = jets.split[rows]
    if "weight" in chunk:
        weight = weight * np.asarray(chunk["weight"], dtype=np.float64)
    for k, lists in enumerate(kept):
        sel = rows[split == k] if len(kept) > 1 else rows
        if not sel.size:
            continue
        lists["source"].append(np.asarray(chunk["source"])[sel].astype(np.int32))
        lists["row"].append(np.asarray(chunk["row"])[sel].astype(np.int64))
        lists["hash"].append(np.asarray(chunk["hash"])[sel].astype(np.uint64))
        lists["item"].append(np.asarray(chunk["item"])[sel].astype(np.int32))
        lists["label"].append(jets.cls[sel].astype(np.int16))
        lists["weight"].append(weight[sel].astype(np.float32))
        lists["copies"].append(copies[sel].astype(np.int32))


def _finish_split(layout: _Layout, k: int, name: str, hist: np.ndarray, out_of_range: np.ndarray,
                  unlabelled: int, plan: SplitPlan | None, acc: _Pass2) -> ResampleResult:
    """Order one split's kept jets by (source, row), expand copies and apply the seeded shuffle."""
    spec = layout.spec
    cols = {c: (np.concatenate(v) if v else np.zeros(0, _OUT_DTYPES[c])) for c, v in acc.kept[k].items()}
    if not _is_sorted(cols["source"], cols["row"]):
        order = np.lexsort((cols["row"], cols["source"]))
        cols = {c: v[order] for c, v in cols.items()}
    copies = cols.pop("copies").astype(np.int64)
    total = int(copies.sum())
    parent = np.repeat(np.arange(len(copies)), copies)
    first = np.cumsum(copies) - copies
    copy = (np.arange(total) - first[parent]).astype(np.int32)
    perm = rng_for(spec.seed, "resample", "shuffle", name).permutation(total)
    parent = parent[perm]
    out = {c: v[parent] for c, v in cols.items()}
    C = layout.n_classes
    if spec.balance_weights and layout.resampled[k]:
        out["weight"] = balanced_weights(out["weight"], out["label"], spec.target_index, C)
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
    return ResampleResult(
        split=name, resampled=plan is not None, method=spec.method if plan is not None else "none",
        classes=spec.class_names, copy=copy[perm], hist_before=hist.copy(),
        hist_after=np.rint(acc.after[k]).astype(np.int64), hist_after_weighted=acc.weighted[k],
        hist_after_sumw2=acc.sumw2[k], ratio=ratio, available=available, out_of_range=out_of_range.copy(),
        unique=acc.unique[k], unlabelled=unlabelled, requested=requested, sampling_fraction=fraction,
        clipped_bins=clipped, empty_bins=empty, ratio_grid_bins=grid_bins, **out,
    )


class EmptySplit(ValueError):
    """A split that cannot be trained or resampled on: no rows, or no rows of the target class."""


def check_split(result: ResampleResult, spec: ResampleSpec) -> list[str]:
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
    sums = np.bincount(label, weights=weight.astype(np.float64), minlength=n_classes)
    ok = (sums > 0) & (sums[target] > 0)
    factor = np.where(ok, sums[target] / np.where(ok, sums, 1.0), 1.0)
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
