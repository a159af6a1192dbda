"""Bin edges of the resampling variables and the flat bin index of every jet.

A config gives each variable's bins as consecutive ranges ``[[low, high, n], ...]`` (umami's
format), so that fine bins at low pt and coarse ones in the tail share one edge list. Jets are
histogrammed on the product grid of all variables through one flat index per jet, found with
``np.searchsorted`` and a multiply-add, so a chunk costs a few vector passes whatever the
number of bins and ``np.bincount`` does the counting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


def edges_from_ranges(name: str, ranges: Sequence[Sequence[float]]) -> np.ndarray:
    """Concatenate ranges ``[[low, high, n], ...]`` of variable ``name`` into one edge array.

    Ranges must be contiguous (each starts where the previous ends) and increasing; a
    ValueError naming the variable says which range breaks the rule.
    """
    where = f"resample.variables.{name}"
    if isinstance(ranges, (str, bytes)) or not isinstance(ranges, Sequence) or len(ranges) == 0:
        raise ValueError(f"{where}: expected a non-empty list of [low, high, n] ranges, got {ranges!r}")
    pieces: list[np.ndarray] = []
    previous_high: float | None = None
    for i, item in enumerate(ranges):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 3:
            raise ValueError(f"{where}: range {i} must be [low, high, n], got {item!r}")
        low, high, n = item
        if isinstance(n, bool) or not float(n).is_integer() or n < 1:
            raise ValueError(f"{where}: range {i} needs a whole number of bins >= 1, got {n!r}")
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)) or not high > low:
            raise ValueError(f"{where}: range {i} needs finite low < high, got [{low}, {high}]")
        if previous_high is not None:
            if not math.isclose(low, previous_high, rel_tol=1e-12, abs_tol=0.0):
                raise ValueError(
                    f"{where}: range {i} starts at {low} but range {i - 1} ends at {previous_high}; "
                    "ranges must be contiguous and increasing"
                )
            low = previous_high
        edges = np.linspace(low, high, int(n) + 1)
        pieces.append(edges if not pieces else edges[1:])
        previous_high = high
    return np.concatenate(pieces)


def check_edges(name: str, edges: object) -> np.ndarray:
    """Return ``edges`` as a read-only float64 array after checking it is a valid edge list."""
    where = f"resample.variables.{name}"
    try:
        array = np.array(edges, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: bin edges must be numbers ({err})") from None
    if array.ndim != 1 or len(array) < 2:
        raise ValueError(f"{where}: expected at least two bin edges, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or not np.all(np.diff(array) > 0):
        raise ValueError(f"{where}: bin edges must be finite and strictly increasing")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Grid:
    """The product grid of all resampling variables, flattened in C order (last variable fastest)."""

    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    axes: tuple["Axis", ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(Axis.build(e) for e in self.edges))

    @classmethod
    def from_variables(cls, variables: Mapping[str, np.ndarray]) -> "Grid":
        """Build the grid of ``variables`` (name -> edges), keeping their order."""
        return cls(tuple(variables), tuple(np.asarray(e, dtype=np.float64) for e in variables.values()))

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of bins per variable."""
        return tuple(len(e) - 1 for e in self.edges)

    @property
    def size(self) -> int:
        """Number of cells of the grid."""
        return int(np.prod(self.shape))

    def locate(self, columns: Mapping[str, np.ndarray], factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Flat cell of each jet on the grid and on the ``factor`` times finer grid (-1 outside).

        A value equal to the last edge belongs to the last bin (``np.histogram``'s convention);
        NaN is outside. With ``factor`` 1 both arrays are the same object.
        """
        coarse: np.ndarray | None = None
        fine: np.ndarray | None = None
        inside: np.ndarray | None = None
        for name, edges, axis in zip(self.names, self.edges, self.axes):
            x = np.asarray(columns[name], dtype=np.float64)
            n = len(edges) - 1
            idx, ok = axis.locate(x)
            inside = ok if inside is None else inside & ok
            coarse = idx if coarse is None else coarse * n + idx
            if factor > 1:
                low = edges[idx]
                width = edges[idx + 1] - low
                with np.errstate(invalid="ignore"):
                    sub = np.fmin(np.fmax((x - low) / width * factor, 0.0), factor - 1).astype(np.int64)
                sub += idx * factor
                fine = sub if fine is None else fine * (n * factor) + sub
        assert coarse is not None and inside is not None
        coarse[~inside] = -1
        if factor == 1:
            return coarse, coarse
        assert fine is not None
        fine[~inside] = -1
        return coarse, fine

    def fine_parent(self, factor: int) -> np.ndarray:
        """For each cell of the ``factor`` times finer grid, its flat cell on this grid."""
        axes = [np.repeat(np.arange(n), factor) for n in self.shape]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.ravel_multi_index(tuple(m.ravel() for m in mesh), self.shape)

    def upscale(self, values: np.ndarray, defined: np.ndarray, factor: int) -> np.ndarray:
        """Multilinearly interpolate ``values`` (leading axes, then the grid) at the finer grid's centres.

        Interpolation runs between neighbouring bin centres in each variable and is flat
        beyond the outermost centres. Cells where ``defined`` is false do not take part: the
        weights of the defined neighbours are renormalised (normalised convolution), so a
        bin next to an empty one keeps its own value instead of being pulled towards zero.
        Cells with no defined neighbour get 0.
        """
        lead = values.ndim - len(self.shape)
        numerator = np.where(defined, values, 0.0).astype(np.float64)
        weight = defined.astype(np.float64)
        for axis, edges in enumerate(self.edges):
            matrix = _interpolation_matrix(edges, factor)
            numerator = np.moveaxis(np.tensordot(matrix, numerator, axes=([1], [lead + axis])), 0, lead + axis)
            weight = np.moveaxis(np.tensordot(matrix, weight, axes=([1], [lead + axis])), 0, lead + axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, numerator / np.where(weight > 0, weight, 1.0), 0.0)


_LOOKUP_CELLS_MAX = 1 << 20


@dataclass(frozen=True, eq=False)
class Axis:
    """The edges of one variable and a lookup table that finds a value's bin without a binary search.

    The table gives, for each cell of a uniform grid with cells half as wide as the narrowest
    bin, the bin of the cell's left end; a value's bin is then that entry corrected by two
    exact comparisons against the edges, which makes :meth:`locate` equal to
    ``np.searchsorted(edges, x, side="right") - 1`` and several times faster. Edge lists
    whose table would exceed 2^20 cells fall back to ``np.searchsorted``.
    """

    edges: np.ndarray
    table: np.ndarray | None
    origin: float
    inverse_step: float

    @classmethod
    def build(cls, edges: np.ndarray) -> "Axis":
        """Precompute the lookup table of ``edges``."""
        edges = np.asarray(edges, dtype=np.float64)
        step = float(np.min(np.diff(edges))) / 2
        cells = int(np.ceil(float(edges[-1] - edges[0]) / step)) + 1
        if cells > _LOOKUP_CELLS_MAX:
            return cls(edges, None, float(edges[0]), 1.0 / step)
        starts = edges[0] + np.arange(cells) * step
        table = np.clip(np.searchsorted(edges, starts, side="right") - 1, 0, len(edges) - 2).astype(np.int64)
        return cls(edges, table, float(edges[0]), 1.0 / step)

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin of each value, clipped into range, and whether it lies within the edges (last edge closed)."""
        edges = self.edges
        n = len(edges) - 1
        inside = (x >= edges[0]) & (x <= edges[-1])
        if self.table is None:
            idx = np.searchsorted(edges, x, side="right") - 1
        else:
            with np.errstate(invalid="ignore"):
                cell = np.fmin(np.fmax((x - self.origin) * self.inverse_step, 0.0), len(self.table) - 1)
            idx = self.table[cell.astype(np.int64)]
            idx -= x < edges[idx]
            idx += x >= edges[np.minimum(idx + 1, n)]
        np.clip(idx, 0, n - 1, out=idx)
        return idx, inside


def _interpolation_matrix(edges: np.ndarray, factor: int) -> np.ndarray:
    """(n * factor, n) weights of the coarse bin centres for each fine bin centre of one axis."""
    n = len(edges) - 1
    widths = np.diff(edges)
    centres = edges[:-1] + widths / 2
    fine = (edges[:-1, None] + (np.arange(factor) + 0.5)[None, :] / factor * widths[:, None]).ravel()
    left = np.searchsorted(centres, fine, side="right") - 1
    matrix = np.zeros((len(fine), n))
    rows = np.arange(len(fine))
    below = left < 0
    above = left >= n - 1
    matrix[rows[below], 0] = 1.0
    matrix[rows[above], n - 1] = 1.0
    inner = ~(below | above)
    j = left[inner]
    lam = (fine[inner] - centres[j]) / (centres[j + 1] - centres[j])
    matrix[rows[inner], j] = 1.0 - lam
    matrix[rows[inner], j + 1] = lam
    return matrix

