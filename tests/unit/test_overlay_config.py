"""The ``background.overlay`` settings: what make_overlay builds from them (simulated, the shipped
payload, a checkpoint file), what the config checks refuse before anything runs (exit 2, naming the
key), and what they do to digests (nothing without an overlay; TrainBackgroundGenerator's digest
never)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tracerflow.background.conditions import shipped_store
from tracerflow.background.generator import BackgroundGenerator, payload_name
from tracerflow.background.overlay import make_overlay
from tracerflow.config.load import ConfigError, load_config
from tracerflow.config.schema import BACKGROUND
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.generate_sample import GenerateSample
from tracerflow.tasks.train_background import TrainBackgroundGenerator
from tracerflow.toy.pixel_background import BackgroundPhysics, simulate_events
from tracerflow.toy.pixels import GEOMETRIES

HITS = "hits"
HASHES = np.arange(1, 30, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15 & 0xFFFFFFFF)


def _block(**changes):
    return {**load_config(HITS)["background"], **changes}


def test_no_overlay_builds_nothing_and_simulated_draws_the_reference_simulation_by_hash():
    assert make_overlay(_block(overlay="none"), 42) is None
    overlay = make_overlay(_block(overlay="simulated"), 42)
    expected = simulate_events(GEOMETRIES["default"], BackgroundPhysics.of(_block()["physics"]), 42, HASHES)[1]
    got = overlay.digits_of(HASHES)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert overlay.collection == "hits" and overlay.shape == GEOMETRIES["default"].shape


def test_generated_reads_the_shipped_payload_or_a_checkpoint_file_of_the_same_weights(tmp_path):
    shipped = make_overlay(_block(overlay="generated", payload="shipped"), 42)
    assert "BackgroundGenerator_clusters" in shipped.describe
    reference = BackgroundGenerator("clusters", framework_seed=42)
    reference.initialize()
    expected = reference.events(HASHES)
    got = shipped.digits_of(HASHES)
    assert len(got["charge"]) > 0 and all(np.array_equal(got[k], expected[k]) for k in expected)

    checkpoint = tmp_path / "clusters.pt"
    torch.save(shipped_store().get(BACKGROUND.fields["globaltag"].default, payload_name("clusters")).state_dict,
               checkpoint)
    from_file = make_overlay(_block(overlay="generated", payload=str(checkpoint)), 42)
    got = from_file.digits_of(HASHES)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("overrides,key,says", [
    (("event.template=tracerflow.templates.toy:ToyEvent",), "background.collection", "no collection"),
    (("background.collection=neighbours",), "background.collection", "no collection"),
    (("samples.ttbar.generate.pixel_hits=belle2",), "samples.ttbar.generate.pixel_hits", "must be the same"),
    (("background.payload=/no/such/file.pt",), "background.payload", "no such checkpoint file"),
    (("background.payload=shipped", "background.model=conditioned"), "background.payload",
     "BackgroundGenerator_conditioned"),
    (("background.payload=shipped", "background.geometry=belle2", "samples.ttbar.generate.pixel_hits=belle2",
      "event.template=tracerflow.templates.toy:ToyHitEventBelle2"), "background.payload", "geometry"),
    (("background.overlay=sometimes",), "background.overlay", "sometimes"),
])
def test_an_overlay_that_cannot_work_is_refused_naming_the_key(overrides, key, says):
    with pytest.raises(ConfigError) as err:
        load_config(HITS, overrides)
    assert err.value.key == key and says in err.value.message, err.value.message


def _events_digest(*overrides):
    task = BuildEvents.all_for(HITS, overrides)[0]
    return next(iter(task.output().values())).digest


def test_the_events_digest_follows_the_overlay_and_the_trained_generator_never_does():
    trained = {TrainBackgroundGenerator(config=HITS, overrides=o).digest()
               for o in ((), ("background.overlay=simulated",), ("background.payload=shipped",),
                         ("background.overlay=none",))}
    assert len(trained) == 1
    digests = {_events_digest(*o) for o in ((), ("background.overlay=simulated",), ("background.payload=shipped",),
                                             ("background.overlay=none",),
                                             ("background.overlay=simulated", "background.physics.noise=2.0"))}
    assert len(digests) == 5
    # performance keys change no digest
    assert _events_digest("background.nintra=2") == _events_digest()


def test_a_null_pixel_hits_leaves_the_sample_digest_as_it_was_without_the_key():
    plain = GenerateSample(config="", sample="ttbar").digest()
    assert GenerateSample(config="", overrides=("samples.ttbar.generate.pixel_hits=null",), sample="ttbar").digest() \
        == plain
    assert GenerateSample(config="", overrides=("samples.ttbar.generate.pixel_hits=default",),
                          sample="ttbar").digest() != plain
