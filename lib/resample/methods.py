"""The four resampling methods: per-bin ratios from the histograms, and per-jet copies from them.

For a class c and a cell b of the grid, the target class t and the sampling fraction f,
``r_c(b) = f * H_t(b) / H_c(b)`` is the expected number of copies of each jet of c in b that
makes c's output follow t's distribution with ``f * N_t`` jets in all (umami's ratio of the
target pdf to the component pdf, times the requested count over the available count).

- ``pdf``: copies ~ Poisson(r), drawn by inverting the Poisson CDF at the jet's own uniform
  (umami samples with replacement from the same ratio, so duplicates occur even while unique
  jets remain). With ``upscale_pdf`` k > 1 the ratio is evaluated on a k times finer grid:
  linearly interpolated between bin centres, then rescaled within each bin so the bin's
  expected output is unchanged (the smoothing reshapes a bin, it does not move jets between
  bins; plain interpolation would, wherever the ratio is curved).
- ``countup``: copies = floor(r) + Bernoulli(frac(r)). Every jet of a bin gets floor(r) or
  floor(r) + 1 copies, so all unique jets are used before any duplicate. The remainder is
  drawn per jet, so a bin's count is binomial around its target rather than exactly equal
  to it (exactness would need the rank of each jet's uniform within its bin, a third pass).
- ``weighting``: one copy per jet with weight r (clipped like a ratio), rescaled so that
  each class's weights sum to its requested count.
- ``none``: one copy per jet, weight 1.

The target class is kept as it is (one copy, weight 1) by every method. Ratios above
``max_upsampling_ratio`` are clipped to it; ``sampling_fraction="auto"`` picks the largest f
for which no cell holding jets of a class needs clipping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracerflow.resample.binning import Grid

_DIRECT_MAX_MEAN = 30.0
_MAX_STEPS = 400
_NEGLIGIBLE_PMF = 1e-17
_CLIP_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class SplitPlan:
    """What pass 2 applies to one resampled split, and the numbers that led to it.

    ``table`` (classes, cells of the evaluation grid): expected copies (pdf, countup) or weight
    (weighting, none) of a jet of that class in that cell; the evaluation grid is the
    ``upscale_pdf`` times finer grid for pdf, else the bin grid. ``ratio`` (classes, bins):
    the per-bin value on the bin grid after clipping (weights for ``weighting``), 0 where a
    class has no jets. ``clipped_bins`` counts evaluation-grid cells per class whose ratio
    was clipped, ``empty_bins`` bins with target jets but none of the class.
    """

    table: np.ndarray
    ratio: np.ndarray
    sampling_fraction: float
    requested: np.ndarray
    clipped_bins: np.ndarray
    empty_bins: np.ndarray
    factor: int


def plan_split(
    hist: np.ndarray,
    grid: Grid,
    target: int,
    method: str,
    sampling_fraction: float | str,
    max_ratio: float,
    upscale: int = 1,
    fine_hist: np.ndarray | None = None,
) -> SplitPlan:
    """Turn the histograms ``hist`` (classes, *grid shape) of one split into the table pass 2 applies.

    ``none`` gets a table of ones, NaN as sampling fraction and its in-range counts as
    requested counts.

    ``fine_hist`` (classes, cells of the ``upscale`` times finer grid) is needed for ``pdf``
    with ``upscale`` > 1: the interpolated ratio is rescaled within each bin so that the
    bin's expected output stays ``r * H_c(b)``, i.e. the smoothing moves jets within a bin
    but never changes how many a bin receives.
    """
    n_classes = hist.shape[0]
    counts = hist.reshape(n_classes, -1).astype(np.float64)
    target_counts = counts[target]
    defined = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(defined, target_counts / np.where(defined, counts, 1.0), 0.0)
    unit[target] = defined[target]
    empty = ((counts == 0) & (target_counts > 0)).sum(axis=1)
    empty[target] = 0
    others = np.arange(n_classes) != target
    n_target = float(target_counts.sum())

    factor = upscale if method == "pdf" else 1
    if factor > 1:
        if fine_hist is None:
            raise ValueError("plan_split: pdf with upscale_pdf > 1 needs the histograms on the finer grid")
        eval_unit, eval_defined = _upscaled_unit_ratio(grid, factor, unit, defined, counts, fine_hist)
    else:
        eval_unit, eval_defined = unit, defined

    if sampling_fraction == "auto":
        candidates = eval_unit[others][eval_defined[others]]
        peak = float(candidates.max()) if candidates.size else 0.0
        fraction = max_ratio / peak if peak > 0 else 1.0
    else:
        fraction = float(sampling_fraction)

    if method == "none":
        table = np.ones_like(eval_unit)
        ratio = defined.astype(np.float64)
        clipped = np.zeros(n_classes, np.int64)
        return SplitPlan(table, ratio.reshape(hist.shape), float("nan"), counts.sum(axis=1), clipped,
                         empty.astype(np.int64), 1)

    requested = np.where(others, fraction * n_target, n_target)

    table = eval_unit * np.where(others, fraction, 1.0)[:, None]
    clipped = ((table > max_ratio * (1 + _CLIP_TOLERANCE)) & eval_defined & others[:, None]).sum(axis=1)
    table[others] = np.minimum(table[others], max_ratio)
    ratio = unit * np.where(others, fraction, 1.0)[:, None]
    ratio[others] = np.minimum(ratio[others], max_ratio)
    if method == "weighting":
        weighted = (counts * table).sum(axis=1)
        scale = np.divide(requested, weighted, out=np.zeros(n_classes), where=weighted > 0)
        scale[target] = 1.0
        table = table * scale[:, None]
        ratio = table
    return SplitPlan(
        table, ratio.reshape(hist.shape), fraction, requested, clipped.astype(np.int64), empty.astype(np.int64), factor
    )


def _upscaled_unit_ratio(
    grid: Grid, factor: int, unit: np.ndarray, defined: np.ndarray, counts: np.ndarray, fine_hist: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit ratio on the finer grid: interpolated, then rescaled to keep each bin's expected output."""
    n_classes = unit.shape[0]
    shape = (n_classes,) + grid.shape
    fine = grid.upscale(unit.reshape(shape), defined.reshape(shape), factor).reshape(n_classes, -1)
    fine_counts = fine_hist.reshape(n_classes, -1).astype(np.float64)
    parent = grid.fine_parent(factor)
    for c in range(n_classes):
        produced = np.bincount(parent, weights=fine_counts[c] * fine[c], minlength=grid.size)
        wanted = counts[c] * unit[c]
        scale = np.divide(wanted, produced, out=np.zeros(grid.size), where=produced > 0)
        fine[c] *= scale[parent]
    return fine, fine_counts > 0


def poisson_from_uniform(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson draws by CDF inversion: the smallest k with P(X <= k) >= u, as ``scipy.stats.poisson.ppf``.

    Means up to 30 use a vectorised running sum of the pmf over the jets still above the CDF
    (work ~ mean + 1 per jet); the sum stops once the pmf is negligible, where rounding
    could keep the CDF below a uniform within 1e-16 of 1. Larger means call
    ``scipy.stats.poisson.ppf``.
    """
    u = np.asarray(u, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    out = np.zeros(u.shape, dtype=np.int64)
    large = mean > _DIRECT_MAX_MEAN
    if large.any():
        from scipy import stats  # imported here: scheduling needs no scipy

        out[large] = np.maximum(stats.poisson.ppf(u[large], mean[large]), 0).astype(np.int64)
        active = np.flatnonzero(~large)
        lam, uu = mean[active], u[active]
    else:
        active, lam, uu = np.arange(u.size), mean.ravel(), u.ravel()
    pmf = np.exp(-lam)
    cdf = pmf.copy()
    k = 0
    while active.size and k < _MAX_STEPS:
        above = uu > cdf
        if k > _DIRECT_MAX_MEAN:
            above &= pmf > _NEGLIGIBLE_PMF
        if not above.all():
            active, lam, uu, pmf, cdf = active[above], lam[above], uu[above], pmf[above], cdf[above]
            if not active.size:
                break
        k += 1
        out.flat[active] = k
        pmf *= lam / k
        cdf += pmf
    return out


def countup_copies(u: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """floor(ratio) copies plus one more with probability frac(ratio), decided by the jet's uniform."""
    whole = np.floor(ratio)
    return (whole + (u < ratio - whole)).astype(np.int64)
