"""Locating jets on the resampling grid, the finer pdf grid and the interpolation onto it."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.resample import Grid, edges_from_ranges
from tracerflow.resample.binning import Axis


@pytest.mark.parametrize(
    "edges",
    [
        np.linspace(0, 2.5, 6),
        edges_from_ranges("pt", [[20, 250, 23], [250, 1000, 15], [1000, 6000, 10]]),
        np.array([0.0, 1e-3, 1e4]),
        np.array([-1.0, 0.1, 0.3, 0.7, 2.0]),
    ],
)
def test_axis_locate_equals_searchsorted(edges):
    rng = np.random.default_rng(0)
    span = edges[-1] - edges[0]
    x = np.concatenate([
        rng.uniform(edges[0] - 0.1 * span, edges[-1] + 0.1 * span, 100_000),
        edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), [np.nan, np.inf, -np.inf, 1e300],
    ])
    idx, inside = Axis.build(edges).locate(x)
    expected = np.searchsorted(edges, x, side="right") - 1
    expected[x == edges[-1]] = len(edges) - 2
    ok = (expected >= 0) & (expected < len(edges) - 1)
    assert np.array_equal(inside, ok)
    assert np.array_equal(idx[ok], expected[ok])


def test_grid_flat_and_fine_cells():
    grid = Grid.from_variables({"a": np.array([0.0, 1.0, 3.0]), "b": np.array([0.0, 1.0, 2.0, 4.0])})
    assert grid.shape == (2, 3) and grid.size == 6
    cols = {"a": np.array([0.5, 2.9, 3.0, 3.1, 0.2]), "b": np.array([3.9, 0.0, 4.0, 1.0, np.nan])}
    coarse, fine = grid.locate(cols, factor=2)
    assert coarse.tolist() == [2, 3, 5, -1, -1]
    # fine grid (4, 6): a=0.5 -> sub-bin 1, b=3.9 -> 5; a=2.9 -> 3, b=0 -> 0; a=3 -> 3, b=4 -> 5
    assert fine.tolist() == [1 * 6 + 5, 3 * 6 + 0, 3 * 6 + 5, -1, -1]
    assert np.array_equal(grid.fine_parent(2)[fine[:3]], coarse[:3])


def test_upscale_is_linear_between_centres_and_flat_outside():
    edges = np.array([0.0, 1.0, 2.0, 4.0])
    grid = Grid.from_variables({"x": edges})
    centres = (edges[:-1] + edges[1:]) / 2
    values = 3.0 + 2.0 * centres
    fine = grid.upscale(values[None], np.ones((1, 3), bool), 4)[0]
    widths = np.diff(edges)
    fine_centres = (edges[:-1, None] + (np.arange(4) + 0.5) / 4 * widths[:, None]).ravel()
    expected = 3.0 + 2.0 * np.clip(fine_centres, centres[0], centres[-1])
    assert np.allclose(fine, expected)


def test_upscale_ignores_undefined_neighbours():
    grid = Grid.from_variables({"x": np.arange(4.0), "y": np.arange(3.0)})
    values = np.array([[1.0, 2.0], [5.0, 7.0], [3.0, 4.0]])
    defined = np.array([[True, True], [False, True], [True, True]])
    fine = grid.upscale(values[None], defined[None], 2)[0].reshape(6, 4)
    parent = grid.fine_parent(2).reshape(6, 4)
    # the undefined cell's value (5.0) never leaks into the interpolation
    assert fine.max() <= 7.0 and not np.any(np.isclose(fine, 5.0))
    assert np.all(fine[parent == 0] >= 1.0)
    # the corner fine cells lie beyond every centre: they keep their own bin's value
    assert fine[0, 0] == 1.0 and fine[-1, -1] == 4.0
