"""The toy's reference pixel background (lib/toy/pixel_background.py): per-event digits that depend
only on (seed, event hash), an inner layer busier than the outer, occupancies of one event's
sensors correlated through the event's intensity, zero suppression and 8-bit charges."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.toy.pixel_background import BackgroundPhysics, dense, simulate_events
from tracerflow.toy.pixels import GEOMETRIES, PixelGeometry, geometry

HASHES = np.arange(1, 1501, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)


@pytest.fixture(scope="module")
def simulated():
    g = GEOMETRIES["default"]
    levels, digits = simulate_events(g, BackgroundPhysics.default(), 7, HASHES)
    return g, levels, digits, dense(g, digits, len(HASHES))


def test_an_events_digits_depend_only_on_the_seed_and_its_hash(simulated):
    g, levels, _, images = simulated
    picked = [40, 3, 977]
    again_levels, again = simulate_events(g, BackgroundPhysics.default(), 7, HASHES[picked])
    assert np.array_equal(dense(g, again, 3), images[picked]) and np.array_equal(again_levels, levels[picked])
    _, other = simulate_events(g, BackgroundPhysics.default(), 8, HASHES[picked])
    assert not np.array_equal(dense(g, other, 3), images[picked])


def test_digits_are_sorted_zero_suppressed_and_eight_bit(simulated):
    g, _, digits, images = simulated
    flat = ((digits["event"].astype(np.int64) * g.n_sensors + digits["sensor"]) * g.height + digits["ucell"]) \
        * g.width + digits["vcell"]
    assert np.all(np.diff(flat) > 0)
    assert digits["charge"].dtype == np.uint8 and digits["charge"].min() >= 7
    assert int((images > 0).sum()) == len(digits["charge"])


def test_the_inner_layer_is_busier_and_an_events_sensors_are_correlated(simulated):
    g, levels, _, images = simulated
    occupancy = (images > 0).mean(axis=(2, 3))  # (events, sensors)
    layer = g.layer_of()
    assert occupancy[:, layer == 0].mean() > 1.3 * occupancy[:, layer == 1].mean()
    corr = np.corrcoef(occupancy.T)
    assert corr[~np.eye(g.n_sensors, dtype=bool)].min() > 0.1
    assert abs(levels.mean() - 1.0) < 0.05  # Gamma(k, 1/k): mean intensity 1
    assert np.corrcoef(levels, occupancy.sum(axis=1))[0, 1] > 0.8


def test_a_given_intensity_scales_the_occupancy(simulated):
    g = simulated[0]
    _, low = simulate_events(g, BackgroundPhysics.default(), 7, HASHES[:400], intensity=np.full(400, 0.5))
    _, high = simulate_events(g, BackgroundPhysics.default(), 7, HASHES[:400], intensity=np.full(400, 2.0))
    assert 3.0 < len(high["charge"]) / len(low["charge"]) < 5.0


def test_geometries_by_name_and_refused_ones():
    assert geometry("belle2").shape == (40, 250, 768) and geometry("default").n_sensors == 10
    assert geometry({"layers": [2], "height": 4, "width": 5}) == PixelGeometry((2,), 4, 5)
    with pytest.raises(ValueError, match="no pixel geometry named 'pxd'"):
        geometry("pxd")
    with pytest.raises(ValueError, match="at least one sensor"):
        PixelGeometry((0,), 4, 4)
