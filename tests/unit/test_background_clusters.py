"""The sparse, cluster-level background model (lib/background/clusters.py): fitted by maximum
likelihood to simulated events, it meets every quality goal on 10,000 events at the default
geometry; its digits are bitwise the same alone or batched and on 1 or 2 threads; its payload goes
through the conditions store into BackgroundGenerator("clusters")."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tracerflow.background.clusters import ClusterModel, _fit_intensity, decompose, fit_tables
from tracerflow.background.conditions import ConditionsStore
from tracerflow.background.generator import BackgroundGenerator, payload_name
from tracerflow.background.models import MODELS, build_model, model_from_config
from tracerflow.background.quality import GOALS, cluster_labels, compare, summarize
from tracerflow.background.train import TrainSettings, fit_clusters
from tracerflow.config.schema import BACKGROUND_MODELS
from tracerflow.hashing import event_hashes
from tracerflow.seeding import derive_seed
from tracerflow.toy.pixel_background import BackgroundPhysics, simulate_events
from tracerflow.toy.pixels import GEOMETRIES

DEFAULT = GEOMETRIES["default"]
PHYSICS = BackgroundPhysics.default()
HASHES = event_hashes("bkg", "f.root", "events", np.arange(40))


def _settings(seed: int = 11) -> TrainSettings:
    return TrainSettings(model="clusters", geometry=DEFAULT, seed=seed, steps=1, batch_size=1, critic_steps=1,
                         learning_rate=0.0, gradient_penalty=0.0, checkpoint_every=1)


@pytest.fixture(scope="module")
def small():
    """A model fitted to 2,000 events, and its payload in a store."""
    model, state, info = fit_clusters(_settings(), PHYSICS, 2000)
    return model, info


def _store(tmp_path, model):
    store = ConditionsStore(tmp_path / "store")
    store.put("tag", payload_name("clusters"), model.state_dict(), {"model": model.config()})
    return store


def test_clusters_is_a_known_model_everywhere():
    assert "clusters" in MODELS and tuple(MODELS) == tuple(BACKGROUND_MODELS)


def test_cluster_labels_join_pixels_through_edges_and_corners():
    # sensor 0: (0,0)-(1,1) diagonal pair, (3,3) alone; sensor 1: (0,0)-(0,1)
    event = np.zeros(5, np.int64)
    sensor = np.array([0, 1, 0, 0, 1])
    u = np.array([0, 0, 1, 3, 0])
    v = np.array([0, 0, 1, 3, 1])
    labels = cluster_labels(DEFAULT, event, sensor, u, v)
    assert labels[0] == labels[2] and labels[1] == labels[4] and len(set(labels.tolist())) == 3


def test_decompose_keeps_every_pixel_and_cuts_big_clusters_into_windows():
    _, digits = simulate_events(DEFAULT, PHYSICS, 3, HASHES[:50])
    pieces = decompose(DEFAULT, digits)
    assert int((pieces["charges"] > 0).sum()) == len(digits["charge"])
    assert int(pieces["charges"].astype(np.int64).sum()) == int(digits["charge"].astype(np.int64).sum())
    # a 1 x 6 line is cut into a piece of 4 and a piece of 2
    line = {"event": np.zeros(6, np.int32), "sensor": np.zeros(6, np.int16), "ucell": np.full(6, 5, np.int16),
            "vcell": np.arange(10, 16, dtype=np.int16), "charge": np.full(6, 20, np.uint8)}
    pieces = decompose(DEFAULT, line)
    assert pieces["v0"].tolist() == [10, 14] and pieces["mask"].tolist() == [0b1111, 0b11]


def test_the_fit_and_config_rebuild_the_model(small):
    model, info = small
    assert info["events"] == 2000 and info["patterns"] > 5 and 0.2 < info["sigma"] < 0.7
    config = json.loads(json.dumps(model.config()))
    assert config["name"] == "clusters" and config["patterns"] == info["patterns"]
    rebuilt = model_from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    latents = {k: torch.cat([model.sample_latents(torch.Generator().manual_seed(i))[k] for i in range(5)])
               for k in ("z", "key")}
    a, b = model.digits(latents), rebuilt.digits(latents)
    assert all(np.array_equal(a[k], b[k]) for k in a) and len(a["charge"]) > 0
    assert isinstance(build_model("clusters", "belle2"), ClusterModel)


def test_the_charge_bank_holds_each_patterns_training_charges_and_only_its_fired_pixels():
    _, digits = simulate_events(DEFAULT, PHYSICS, 5, HASHES[:40])
    pieces = decompose(DEFAULT, digits)
    for cap in (3, 10**9):
        model, info = fit_tables(DEFAULT, digits, 40, bank_cap=cap)
        t = model.tables()
        assert info["bank"] == len(t["bank"]) == int((t["bank_count"] * t["pattern_size"]).sum())
        for p, mask in enumerate(t["pattern_bits"]):
            seen = pieces["charges"][pieces["mask"] == int(model.pattern_masks[p])][:, mask]  # training order
            start, count = int(t["bank_start"][p]), int(t["bank_count"][p])
            vectors = t["bank"][start:start + count * int(t["pattern_size"][p])].reshape(count, -1)
            assert count == min(len(seen), cap) and np.array_equal(vectors, seen[:count])
    # the whole bank (no cap): every training pixel's charge once, a 1-pixel pattern's vector 1 byte
    assert int(t["bank"].astype(np.int64).sum()) == int(digits["charge"].astype(np.int64).sum())
    assert model.state_dict()["bank"].shape == (len(digits["charge"]),)


def test_digits_do_not_depend_on_batch_size_order_or_threads(tmp_path, small):
    model, _ = small
    gen = BackgroundGenerator("clusters", store=_store(tmp_path, model), globaltag="tag", framework_seed=1)
    gen.initialize()
    whole = gen.events(HASHES, batch_size=64)
    assert len(whole["charge"]) > 0
    flat = np.ravel_multi_index((whole["event"], whole["sensor"], whole["ucell"], whole["vcell"]),
                                (len(HASHES), *DEFAULT.shape))
    assert np.all(np.diff(flat) > 0)  # ordered by event, sensor, ucell, vcell, each pixel once
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        small_batches = gen.events(HASHES, batch_size=3)
        torch.set_num_threads(2)
        two = gen.events(HASHES, batch_size=7)
    finally:
        torch.set_num_threads(threads)
    for key in whole:
        assert np.array_equal(whole[key], small_batches[key]), key
        assert np.array_equal(whole[key], two[key]), key
    picked = [31, 2, 17]
    alone = gen.events(HASHES[picked], batch_size=1)
    for i, event in enumerate(picked):
        for key in ("sensor", "ucell", "vcell", "charge"):
            assert np.array_equal(alone[key][alone["event"] == i], whole[key][whole["event"] == event]), key
    one = gen.event(int(HASHES[17]))
    assert np.array_equal(one["charge"], whole["charge"][whole["event"] == 17])
    # the payload from the store draws what the fitted model draws
    latents = {k: torch.cat([gen.latents_of(int(h))[k] for h in HASHES]) for k in ("z", "key")}
    direct = model.digits(latents)
    assert all(np.array_equal(direct[k], whole[k]) for k in whole)
    # an intensity scales the event's clusters
    low, high = (gen.events(HASHES, intensity=np.full(len(HASHES), level)) for level in (0.5, 2.0))
    assert 2.5 < len(high["charge"]) / len(low["charge"]) < 6.0
    other = BackgroundGenerator("clusters", store=_store(tmp_path / "o", model), globaltag="tag", framework_seed=2)
    other.initialize()
    assert not np.array_equal(other.events(HASHES[:4])["charge"], gen.events(HASHES[:4])["charge"])


def test_the_level_distribution_is_fitted_without_assuming_its_form():
    """The per-event level's NPMLE recovers the intensity variance (what sets the inter-sensor
    correlations) of a Gamma and of a two-point mixture, and leaves the latter's middle empty."""
    rng = np.random.default_rng(1)
    rates = np.linspace(3.0, 10.0, 10)
    for intensity in (rng.gamma(6.0, 1.0 / 6.0, 20_000), np.where(rng.random(20_000) < 0.5, 0.5, 1.5)):
        counts = rng.poisson(intensity[:, None] * rates[None, :])
        log_rate, (lo, hi), weight, history = _fit_intensity(counts)
        assert np.allclose(np.exp(log_rate), counts.sum(axis=0) / counts.sum()) and history[-1] <= history[0]
        scale = np.exp(lo + (hi - lo) * (np.arange(len(weight)) + 0.5) / len(weight))
        mean = np.sum(weight * scale)
        variance = np.sum(weight * scale * scale) / mean**2 - 1.0
        assert abs(variance / (intensity.var() / intensity.mean() ** 2) - 1.0) < 0.03
    assert np.sum(weight[np.abs(scale / mean - 1.0) < 0.2]) < 1e-6  # two points, nothing between


def test_drawn_clusters_do_not_touch(small):
    """A cluster that would touch one drawn before it on its sensor is drawn again, so the generated
    digits hold as many 8-connected clusters as were drawn (without it, ~3% fewer at intensity 2)."""
    model, _ = small
    latents = {k: torch.cat([model.sample_latents(torch.Generator().manual_seed(i))[k] for i in range(1000)])
               for k in ("z", "key")}
    digits = model.digits(latents, np.full(1000, 2.0))
    found = len(np.unique(cluster_labels(DEFAULT, digits["event"], digits["sensor"], digits["ucell"], digits["vcell"])))
    drawn = 1000 * 2.0 * np.exp(model.tables()["log_mean_level"])  # expected: the shares sum to 1
    assert 0.99 < found / drawn < 1.01


@pytest.mark.slow
def test_the_fitted_model_meets_every_quality_goal_on_10000_events(tmp_path):
    """The acceptance point: fitted to 20,000 simulated events (the fit_events default), 10,000
    generated events against 10,000 independently simulated ones pass every goal of GOALS."""
    settings = _settings(seed=2024)
    model, _, info = fit_clusters(settings, PHYSICS, 20_000)
    gen = BackgroundGenerator("clusters", store=_store(tmp_path, model), globaltag="tag", seed=settings.seed,
                              nintra=2)
    gen.initialize()
    n = 10_000
    hashes = np.array([derive_seed(settings.seed, "background-evaluation", i) for i in range(2 * n)], dtype=np.uint64)
    generated = summarize(DEFAULT, gen.events(hashes[:n]), n)
    reference = summarize(DEFAULT, simulate_events(DEFAULT, PHYSICS, 42, hashes[n:])[1], n)
    comparison = compare(generated, reference)
    figures = (f"ratios {np.round(comparison.occupancy_ratio, 4).tolist()}, EMD {comparison.charge_emd_adc:.3f}, "
               f"mean charge {comparison.mean_charge_rel:+.4f}, correlation {comparison.correlation_abs:.4f}")
    assert all(comparison.passes(GOALS).values()), figures
