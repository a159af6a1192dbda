"""Training a background generator (lib/background/train.py): images encoded as the models decode
them, a WGAN-GP run that is a function of its settings, resumed from a checkpoint to the same
weights as a run that was not stopped, and a checkpoint of other settings not taken for its own."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from tracerflow.background.models import decode_adc
from tracerflow.background.train import TrainSettings, encode, payload_metadata, train
from tracerflow.toy.pixel_background import BackgroundPhysics
from tracerflow.toy.pixels import PixelGeometry

TINY = PixelGeometry(layers=(1, 2), height=16, width=32)
SETTINGS = TrainSettings(model="conditioned", geometry=TINY, seed=5, steps=4, batch_size=4, critic_steps=2,
                         learning_rate=1e-4, gradient_penalty=10.0, checkpoint_every=2)
PHYSICS = BackgroundPhysics.default(clusters_per_sensor=(3.0, 2.0))


def test_encode_is_the_inverse_of_the_models_decoding():
    adc = np.arange(256, dtype=np.uint8)
    images = encode(adc)
    assert images[0] == -1.0 and images[-1] == 1.0
    assert torch.equal(decode_adc(images.reshape(1, 1, 16, 16), noise_cut=None).flatten(), torch.arange(256).to(torch.uint8))


def test_a_resumed_run_ends_with_the_weights_of_one_that_was_not_stopped(tmp_path):
    whole, state = train(SETTINGS, PHYSICS, tmp_path / "a.pt")
    assert state.step == 4 and len(state.wasserstein) == 4 and all(np.isfinite(state.critic_loss))
    train(dataclasses.replace(SETTINGS, steps=2), PHYSICS, tmp_path / "b.pt")
    resumed, again = train(SETTINGS, PHYSICS, tmp_path / "b.pt")
    assert again.step == 4 and again.wasserstein == state.wasserstein
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    meta = payload_metadata(whole, SETTINGS, PHYSICS, state)
    assert meta["model"]["geometry"] == TINY.as_dict() and meta["steps"] == 4


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    train(dataclasses.replace(SETTINGS, steps=2), PHYSICS, tmp_path / "c.pt")
    _, state = train(dataclasses.replace(SETTINGS, steps=2, seed=6), PHYSICS, tmp_path / "c.pt")
    assert state.step == 2 and len(state.wasserstein) == 2  # started afresh, not taken over at step 2
