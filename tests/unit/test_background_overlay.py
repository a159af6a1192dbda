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


# ------------------------------------------------------------------ the overlay BuildEvents runs

def _batch(signal: dict, hashes: np.ndarray, extra: bool = True):
    from tracerflow.columns import EventBatch, Table

    counts = np.bincount(signal["event"], minlength=len(hashes)).astype(np.int64)
    fields = {f: signal[f] for f in ("sensor", "ucell", "vcell")}
    fields["charge"] = signal["charge"].astype(np.int16)
    if extra:  # an attribute the overlay knows nothing of
        fields["track"] = np.arange(1, len(signal["charge"]) + 1, dtype=np.int32)
    index = {"hash": hashes, "sample": np.zeros(len(hashes), np.uint16), "file": np.zeros(len(hashes), np.uint16),
             "entry": np.arange(len(hashes), dtype=np.int64)}
    return EventBatch(index=index, tables={"hits": Table(counts=counts, fields=fields)})


def _simulated(physics: BackgroundPhysics):
    return lambda hashes: simulate_events(G, physics, 7, hashes)[1]


def test_the_buildevents_overlay_adds_the_digits_of_each_events_hash_and_keeps_the_hits_attributes():
    from tracerflow.background.overlay import Overlay

    hashes = np.arange(1, 61, dtype=np.uint64) * np.uint64(1_000_003)
    signal = _digits(1, 60, BackgroundPhysics.default(clusters_per_sensor=(2.0, 1.0)))
    batch = _batch(signal, hashes)
    physics = BackgroundPhysics.default()
    Overlay("hits", G.shape, _simulated(physics), "test")(batch)
    hits = batch.tables["hits"]
    expected = overlay(signal, simulate_events(G, physics, 7, hashes)[1], G.shape)
    assert np.array_equal(hits.counts, np.bincount(expected["event"], minlength=60))
    for name in ("sensor", "ucell", "vcell"):
        assert np.array_equal(hits.fields[name], expected[name])
    assert hits.fields["charge"].dtype == np.int16 and np.array_equal(hits.fields["charge"], expected["charge"])
    assert np.array_equal(hits.fields["is_background"], expected["is_background"].astype(np.int8))
    # an attribute the overlay does not know: kept on the signal hits, 0 on background digits
    track = hits.fields["track"]
    assert np.all(track[hits.fields["is_background"] == 1] == 0)
    assert np.array_equal(np.sort(track[hits.fields["is_background"] == 0]), np.arange(1, len(signal["charge"]) + 1))


def test_the_buildevents_overlay_does_not_depend_on_how_events_are_chunked():
    from tracerflow.background.overlay import Overlay

    hashes = np.arange(1, 41, dtype=np.uint64) * np.uint64(999_983)
    signal = _digits(3, 40, BackgroundPhysics.default(clusters_per_sensor=(2.0, 1.0)))
    whole = _batch(signal, hashes, extra=False)
    run = Overlay("hits", G.shape, _simulated(BackgroundPhysics.default()), "test")
    run(whole)
    parts = []
    for lo, hi in ((0, 13), (13, 40)):
        keep = (signal["event"] >= lo) & (signal["event"] < hi)
        part = {k: v[keep] for k, v in signal.items()}
        part["event"] = part["event"] - lo
        batch = _batch(part, hashes[lo:hi], extra=False)
        run(batch)
        parts.append(batch.tables["hits"])
    for name in ("sensor", "ucell", "vcell", "charge", "is_background", "background_charge"):
        assert np.array_equal(whole.tables["hits"].fields[name], np.concatenate([p.fields[name] for p in parts]))
    assert np.array_equal(whole.tables["hits"].counts, np.concatenate([p.counts for p in parts]))


def test_hits_outside_the_geometry_or_a_missing_collection_are_refused_by_name():
    from tracerflow.background.overlay import Overlay
    from tracerflow.templates.event import TemplateError

    hashes = np.arange(1, 5, dtype=np.uint64)
    signal = _digits(4, 4, BackgroundPhysics.default(clusters_per_sensor=(2.0, 1.0)))
    signal["ucell"] = signal["ucell"].copy()
    signal["ucell"][0] = G.height
    with pytest.raises(TemplateError, match="ucell outside"):
        Overlay("hits", G.shape, _simulated(BackgroundPhysics.default()), "test")(_batch(signal, hashes))
    with pytest.raises(TemplateError, match="'pixels'"):
        Overlay("pixels", G.shape, _simulated(BackgroundPhysics.default()), "test")(_batch(signal, hashes))
