"""The overlay of background digits onto signal hits (lib/background/overlay.py): exactly the
background's digits are added, charges of a pixel fired by both add up to the ADC's 255, and the
signal hits come back unchanged when the overlay is taken off."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.background.overlay import overlay
from tracerflow.toy.pixel_background import BackgroundPhysics, simulate_events
from tracerflow.toy.pixels import GEOMETRIES

G = GEOMETRIES["default"]


def _digits(seed: int, n: int, physics: BackgroundPhysics):
    hashes = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(seed * 7919 + 1)
    return simulate_events(G, physics, seed, hashes)[1]


def test_overlay_adds_exactly_the_background_digits_and_can_be_taken_off():
    signal = _digits(1, 200, BackgroundPhysics.default(clusters_per_sensor=(2.0, 1.0)))  # stands for signal hits
    background = _digits(2, 200, BackgroundPhysics.default())
    merged = overlay(signal, background, G.shape)
    key = lambda d: (((d["event"].astype(np.int64) * G.n_sensors + d["sensor"]) * G.height + d["ucell"]) * G.width
                     + d["vcell"])
    both = np.intersect1d(key(signal), key(background))
    assert len(both) > 0  # some pixels are fired by both
    assert len(merged["charge"]) == len(signal["charge"]) + len(background["charge"]) - len(both)
    assert np.all(np.diff(key(merged)) > 0)
    assert np.array_equal(np.sort(key(merged)[merged["is_background"]]), np.setdiff1d(key(background), both))
    # the background's charge is all there, up to the ADC's range
    assert int(merged["background_charge"].sum()) <= int(background["charge"].sum())
    only = merged["is_background"]
    assert np.array_equal(merged["charge"][only], merged["background_charge"][only])
    # taken off again: the signal hits exactly
    kept = ~merged["is_background"]
    back = {f: merged[f][kept] for f in ("event", "sensor", "ucell", "vcell")}
    back["charge"] = (merged["charge"][kept] - merged["background_charge"][kept])
    capped = merged["charge"][kept] == 255
    assert np.array_equal(back["event"], signal["event"]) and np.array_equal(back["ucell"], signal["ucell"])
    assert np.array_equal(back["charge"][~capped], signal["charge"][~capped])


def test_a_pixel_fired_by_both_sums_to_at_most_255_and_counts_as_signal():
    one = {"event": np.array([0]), "sensor": np.array([3]), "ucell": np.array([5]), "vcell": np.array([7]),
           "charge": np.array([200], np.uint8)}
    merged = overlay(one, {**one, "charge": np.array([100], np.uint8)}, G.shape)
    assert merged["charge"].tolist() == [255] and merged["is_background"].tolist() == [False]
    assert merged["background_charge"].tolist() == [55]
    empty = {k: v[:0] for k, v in one.items()}
    assert overlay(empty, one, G.shape)["is_background"].tolist() == [True]
    with pytest.raises(ValueError, match="background digits list a pixel twice"):
        overlay(empty, {k: np.concatenate([v, v]) for k, v in one.items()}, G.shape)
