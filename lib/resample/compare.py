"""Whether two binned distributions agree: two-sample chi2 and KS on histograms.

Resampled histograms contain duplicated jets (pdf, countup) or weighted jets (weighting),
whose bin variance is the sum of squared per-jet contributions, not the count. The chi2 here
is therefore the two-sample test for weighted histograms of Gagunashvili (2006), which takes
each bin's variance estimate and reduces to the usual unweighted test when the variance is
the count.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

CHI2_DESCRIPTION = (
    "two-sample chi2 for weighted histograms (Gagunashvili 2006): "
    "X2 = sum_i (W1 w2_i - W2 w1_i)^2 / (W1^2 s2_i^2 + W2^2 s1_i^2) over bins with a positive "
    "denominator, ndf = number of those bins - 1, p = chi2 survival function; w: bin contents, "
    "W: totals, s^2: sum over jets of (copies x weight)^2, the count for unweighted histograms"
)
KS_DESCRIPTION = "two-sample KS statistic on binned CDFs: max_i |C1_i - C2_i| of the normalised cumulative sums"


class Chi2Result(NamedTuple):
    """Statistic, degrees of freedom and p-value of a two-sample chi2 test (NaN p when ndf < 1)."""

    statistic: float
    ndf: int
    p_value: float


def project(hist: np.ndarray, axis: int) -> np.ndarray:
    """Project histograms (classes, *grid) onto grid axis ``axis``: (classes, bins of that axis)."""
    grid_axes = tuple(a for a in range(1, hist.ndim) if a != axis + 1)
    return hist.sum(axis=grid_axes) if grid_axes else hist


def chi2_two_sample(
    w1: np.ndarray, w2: np.ndarray, var1: np.ndarray | None = None, var2: np.ndarray | None = None
) -> Chi2Result:
    """Test whether histograms ``w1`` and ``w2`` (with bin variances, default the contents) share one shape."""
    w1 = np.asarray(w1, dtype=np.float64).ravel()
    w2 = np.asarray(w2, dtype=np.float64).ravel()
    s1 = w1 if var1 is None else np.asarray(var1, dtype=np.float64).ravel()
    s2 = w2 if var2 is None else np.asarray(var2, dtype=np.float64).ravel()
    total1, total2 = w1.sum(), w2.sum()
    denominator = total1**2 * s2 + total2**2 * s1
    used = denominator > 0
    ndf = int(used.sum()) - 1
    if ndf < 1 or total1 <= 0 or total2 <= 0:
        return Chi2Result(float("nan"), max(ndf, 0), float("nan"))
    statistic = float(np.sum((total1 * w2[used] - total2 * w1[used]) ** 2 / denominator[used]))
    from scipy import stats  # imported here: scheduling needs no scipy

    return Chi2Result(statistic, ndf, float(stats.chi2.sf(statistic, ndf)))


def ks_binned(w1: np.ndarray, w2: np.ndarray) -> float:
    """Largest distance between the normalised cumulative sums of two histograms (NaN if one is empty)."""
    w1 = np.asarray(w1, dtype=np.float64).ravel()
    w2 = np.asarray(w2, dtype=np.float64).ravel()
    total1, total2 = w1.sum(), w2.sum()
    if total1 <= 0 or total2 <= 0:
        return float("nan")
    return float(np.max(np.abs(np.cumsum(w1) / total1 - np.cumsum(w2) / total2)))
