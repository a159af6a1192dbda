"""The background generator's networks (tracerflow.background.models): shapes at both geometries,
Belle II's parameter shapes, per-event determinism (alone or stacked, 1 or 2 threads), latents,
the conditioned model's sharing across sensors, ADC decoding and digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tracerflow.background.models import (
    IMAGE_MODELS,
    BackgroundModel,
    RowLinear,
    build_model,
    decode_adc,
    digits_of,
    model_from_config,
)
from tracerflow.toy.pixels import GEOMETRIES, PixelGeometry

DEFAULT = GEOMETRIES["default"]
BELLE2 = GEOMETRIES["belle2"]


def trained_like(name: str, geometry: PixelGeometry = DEFAULT, seed: int = 0) -> BackgroundModel:
    """A model in eval mode whose BatchNorm statistics are not the identity (as after training)."""
    torch.manual_seed(seed)
    model = build_model(name, geometry)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model.eval()


def latents_of(model: BackgroundModel, seeds) -> dict[str, torch.Tensor]:
    drawn = [model.sample_latents(torch.Generator().manual_seed(seed)) for seed in seeds]
    return {key: torch.cat([one[key] for one in drawn]) for key in drawn[0]}


@pytest.fixture(scope="module")
def models() -> dict[str, BackgroundModel]:
    return {name: trained_like(name) for name in IMAGE_MODELS}


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_one_event_at_the_default_geometry(models, name):
    model = models[name]
    with torch.inference_mode():
        images = model(model.sample_latents(torch.Generator().manual_seed(3)))
    assert images.shape == (1, *DEFAULT.shape) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.std() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_one_event_at_the_belle2_geometry(name):
    model = build_model(name, "belle2").eval()
    with torch.inference_mode():
        images = model(model.sample_latents(torch.Generator().manual_seed(0)))
    assert images.shape == (1, 40, 250, 768) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0


def test_belle2_convnet_has_belle2s_parameters():
    model = build_model("convnet", BELLE2)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert (model.h0, model.w0) == (8, 24)  # 256 x 768 before the crop to 250 rows
    assert shapes["fc.weight"] == (512 * 8 * 24, 96) == (98304, 96)
    convs = [(key, shape) for key, shape in shapes.items() if key.endswith("weight") and len(shape) == 4]
    assert [shape for _, shape in convs] == [
        (512, 512, 5, 5), (256, 512, 5, 5), (128, 256, 5, 5), (64, 128, 5, 5), (32, 64, 5, 5), (1, 32, 5, 5),
    ]
    # Belle II's module names: features.0 ... features.20 (5 x Conv-BN-ReLU-Upsample, then the conv)
    assert [key for key, _ in convs] == [f"features.{i}.weight" for i in (0, 4, 8, 12, 16, 20)]
    assert shapes["features.1.running_var"] == (512,)


def test_belle2_resnet_has_belle2s_parameters():
    model = build_model("resnet", BELLE2)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes["fc.weight"] == (256 * 8 * 24, 96) == (49152, 96)
    widths = (256, 256, 128, 64, 32, 16)
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        assert shapes[f"blocks.{i}.norm1.weight"] == (n_in,)
        assert shapes[f"blocks.{i}.conv1.weight"] == (n_out, n_in, 3, 3)
        assert shapes[f"blocks.{i}.conv2.weight"] == (n_out, n_out, 3, 3)
        # Belle II's shortcut has a 1x1 convolution in every upsampling block, 256 -> 256 too
        assert shapes[f"blocks.{i}.conv.weight"] == (n_out, n_in, 1, 1)
    assert shapes["norm.weight"] == (16,) and shapes["conv.weight"] == (1, 16, 3, 3)


@pytest.mark.parametrize("name", ["convnet", "resnet"])
def test_the_crop_keeps_the_central_pixels(name):
    """30 x 90 pixels are drawn as 32 x 96 and cropped like Belle II's ``[3:-3]`` rows (here 1 row, 3 columns)."""
    model = trained_like(name, PixelGeometry(layers=(2,), height=30, width=90))
    latents = latents_of(model, [5])
    with torch.inference_mode():
        images = model(latents)
        z = latents["z"].reshape(-1, 96)
        if name == "convnet":
            full = torch.tanh(model.features(model.fc(z).view(-1, 512, 1, 3)))
        else:
            h = model.fc(z).view(-1, 256, 1, 3)
            for block in model.blocks:
                h = block(h)
            full = torch.tanh(model.conv(F.relu(model.norm(h))))
    assert full.shape == (2, 1, 32, 96) and images.shape == (1, 2, 30, 90)
    assert torch.equal(images[0], full[:, 0, 1:31, 3:93])


def test_conditioned_model_sizes():
    model = build_model("conditioned", BELLE2)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert shapes["embedding.weight"] == (40, 16)
    assert shapes["project.weight"] == (64, 32 + 32 + 16 + 1)
    assert shapes["fc.weight"] == (64 * 8 * 24, 64)
    assert shapes["mixer.0.qkv.weight"] == (3 * 64, 64) and shapes["mixer.1.ff1.weight"] == (128, 64)
    convs = [shape for key, shape in shapes.items() if key.endswith("weight") and len(shape) == 4]
    assert convs == [(64, 64, 3, 3), (32, 64, 3, 3), (32, 32, 3, 3), (16, 32, 3, 3), (8, 16, 3, 3), (4, 8, 3, 3)]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_an_event_is_the_same_alone_or_stacked(models, name):
    model = models[name]
    seeds = [11, 12, 13]
    stacked = latents_of(model, seeds)
    intensity = torch.tensor([0.5, 1.0, 2.0]) if model.uses_intensity else None
    with torch.inference_mode():
        together = model(stacked, intensity)
        reversed_order = model({key: value.flip(0) for key, value in stacked.items()},
                               None if intensity is None else intensity.flip(0))
        for i, seed in enumerate(seeds):
            alone = model(latents_of(model, [seed]), None if intensity is None else intensity[i : i + 1])
            assert torch.equal(together[i], alone[0]), f"event {i} differs when stacked"
    assert torch.equal(reversed_order.flip(0), together)
    assert not torch.equal(together[0], together[1])


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_an_event_is_the_same_on_one_or_two_threads(models, name):
    model = models[name]
    latents = latents_of(model, [21, 22])
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = model(latents)
            torch.set_num_threads(2)
            two = model(latents)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_latents_come_from_the_events_generator(models, name):
    model = models[name]
    first = model.sample_latents(torch.Generator().manual_seed(7))
    again = model.sample_latents(torch.Generator().manual_seed(7))
    other = model.sample_latents(torch.Generator().manual_seed(8))
    assert first.keys() == again.keys() == other.keys()
    for key in first:
        assert first[key].dtype == torch.float32 and first[key].shape[0] == 1
        assert torch.equal(first[key], again[key])
        assert not torch.equal(first[key], other[key])
    if name == "conditioned":
        assert {key: tuple(v.shape) for key, v in first.items()} == {"event": (1, 32), "sensor": (1, 10, 32)}
    else:
        assert {key: tuple(v.shape) for key, v in first.items()} == {"z": (1, 10, 96)}


def test_belle2_latents_shapes():
    assert tuple(build_model("convnet", BELLE2).sample_latents(torch.Generator())["z"].shape) == (1, 40, 96)
    latents = build_model("conditioned", BELLE2).sample_latents(torch.Generator())
    assert tuple(latents["event"].shape) == (1, 32) and tuple(latents["sensor"].shape) == (1, 40, 32)


def test_conditioned_sensors_share_the_event_and_know_which_sensor_they_are(models):
    model = models["conditioned"]
    latents = latents_of(model, [31])
    with torch.inference_mode():
        base = model(latents)
        # one event latent feeds every sensor: changing it changes each sensor's image
        moved = model({"event": latents["event"] + 1.0, "sensor": latents["sensor"]})
        assert all(not torch.equal(base[0, s], moved[0, s]) for s in range(DEFAULT.n_sensors))
        # the transformer mixes sensors: one sensor's latent reaches the other sensors
        sensor = latents["sensor"].clone()
        sensor[0, 0] += 1.0
        nudged = model({"event": latents["event"], "sensor": sensor})
        assert not torch.equal(base[0, 5], nudged[0, 5])
        # sensors with the very same latents still differ (the learned sensor embedding)
        same = {"event": latents["event"], "sensor": latents["sensor"][:, :1].expand(1, DEFAULT.n_sensors, 32)}
        images = model(same)
        assert not torch.equal(images[0, 0], images[0, 1])
        # no intensity is the learned default; another intensity draws other images
        default = model(latents, model.default_intensity.detach().reshape(1))
        assert torch.equal(base, default)
        assert not torch.equal(base, model(latents, torch.tensor([3.0])))
    # the event latent is drawn once per event, the sensor latents once per sensor
    assert latents["event"].shape == (1, 32) and latents["sensor"].shape == (1, DEFAULT.n_sensors, 32)


def test_sensor_mixer_attention_is_multi_head_attention(models):
    layer = models["conditioned"].mixer[0]
    x = torch.randn(3, DEFAULT.n_sensors, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        q, k, v = layer.qkv(x).view(3, DEFAULT.n_sensors, 3, 4, 16).permute(2, 0, 3, 1, 4).unbind(0)
        expected = layer.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, DEFAULT.n_sensors, 64))
        assert torch.allclose(layer.attention(x), expected, atol=1e-5)


def test_row_linear_is_linear_in_both_modes():
    layer = RowLinear(96, 300)
    x = torch.randn(4, 10, 96, generator=torch.Generator().manual_seed(5))
    expected = F.linear(x, layer.weight, layer.bias)
    assert torch.equal(layer.train()(x), expected)
    with torch.inference_mode():
        assert torch.allclose(layer.eval()(x), expected, atol=1e-5)
        # each row alone gives the same bits as within the batch
        assert torch.equal(layer(x[2, 3:4]), layer(x)[2, 3:4])


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_training_mode_runs_the_batch_and_backpropagates(name):
    model = build_model(name, DEFAULT).train()
    latents = latents_of(model, [1, 2])
    images = model(latents)
    assert images.shape == (2, *DEFAULT.shape)
    images.square().mean().backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_config_rebuilds_the_model(name):
    options = {"channels": [32, 32, 16, 16, 8, 4]} if name == "conditioned" else {}
    model = build_model(name, DEFAULT, **options)
    config = json.loads(json.dumps(model.config()))
    assert config["name"] == name and config["geometry"] == DEFAULT.as_dict()
    rebuilt = model_from_config(config)
    assert type(rebuilt) is type(model) and rebuilt.geometry == DEFAULT
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())
    if name == "conditioned":
        assert config["channels"] == [32, 32, 16, 16, 8, 4]


def test_bad_names_and_inputs_are_refused(models):
    with pytest.raises(ValueError, match="convnet, resnet, conditioned"):
        build_model("gan", DEFAULT)
    convnet = models["convnet"]
    with pytest.raises(ValueError, match="takes latents"):
        convnet({"event": torch.zeros(1, 32)})
    with pytest.raises(ValueError, match=r"shape \(events, 10, 96\)"):
        convnet({"z": torch.zeros(1, 9, 96)})
    with pytest.raises(ValueError, match="takes no intensity"):
        convnet(latents_of(convnet, [1]), torch.ones(1))
    conditioned = models["conditioned"]
    with pytest.raises(ValueError, match="disagree"):
        conditioned({"event": torch.zeros(2, 32), "sensor": torch.zeros(1, 10, 32)})
    with pytest.raises(ValueError, match=r"intensity must have shape \(1,\)"):
        conditioned(latents_of(conditioned, [1]), torch.ones(2))
    with pytest.raises(ValueError, match="6 positive channel widths"):
        build_model("conditioned", DEFAULT, channels=[8, 8])


def test_decode_adc_known_values():
    images = torch.tensor([-1.0, 1.0, 0.0, 0.5, -0.5, -0.3, -0.25, 1.5, -2.0])
    assert decode_adc(images).tolist() == [0, 255, 15, 63, 0, 0, 7, 255, 0]
    # without the noise cut -0.3 decodes to floor(2**2.8 - 1) = 5 and -0.5 to 3
    assert decode_adc(images, noise_cut=None).tolist() == [0, 255, 15, 63, 3, 5, 7, 255, 0]
    assert decode_adc(torch.zeros(2, 3, 4, 5)).dtype == torch.uint8
    assert decode_adc(torch.zeros(2, 3, 4, 5)).shape == (2, 3, 4, 5)


def test_decode_adc_is_belle2s_formula_and_position_independent():
    images = torch.linspace(-1.0, 1.0, 200_001)
    belle2 = torch.pow(256.0, (0.5 * images + 0.5).clamp(0, 1)).sub(1).clamp(0, 255).to(torch.uint8)
    ours = decode_adc(images, noise_cut=None)
    differ = (belle2.int() - ours.int()).abs()
    # both are float32; they may disagree only by one ADC where 256**x - 1 is within an ulp of an integer
    assert differ.max() <= 1 and int((differ > 0).sum()) <= 20
    # images within a few ulps of where the charge steps (256**x - 1 an integer), shuffled: a pixel
    # decodes alike inside a long tensor (vectorised) and in pieces of 7 (scalar path); with
    # torch.pow some two dozen of these would not
    steps = (2 * torch.log2(torch.arange(2, 257, dtype=torch.float64)) / 8 - 1).to(torch.float32)
    ulp = torch.finfo(torch.float32).eps * steps.abs().clamp(min=1e-3)
    near = torch.cat([steps + shift * ulp for shift in (-3, -2, -1, 0, 1, 2, 3)])
    generator = torch.Generator().manual_seed(6)
    edges = torch.cat([near[torch.randperm(len(near), generator=generator)] for _ in range(8)])
    assert torch.equal(decode_adc(edges, None), torch.cat([decode_adc(piece, None) for piece in edges.split(7)]))


def test_digits_round_trip_to_the_dense_charges():
    generator = torch.Generator().manual_seed(9)
    charges = torch.randint(1, 256, (2, 3, 5, 7), generator=generator, dtype=torch.uint8)
    charges[torch.rand(charges.shape, generator=generator) < 0.8] = 0
    digits = digits_of(charges)
    assert {key: value.dtype for key, value in digits.items()} == {
        "event": np.int32, "sensor": np.int16, "ucell": np.int16, "vcell": np.int16, "charge": np.uint8,
    }
    assert len(digits["charge"]) == int((charges > 0).sum()) > 0
    dense = np.zeros((2, 3, 5, 7), np.uint8)
    dense[digits["event"], digits["sensor"], digits["ucell"], digits["vcell"]] = digits["charge"]
    assert np.array_equal(dense, charges.numpy())
    flat = np.ravel_multi_index((digits["event"], digits["sensor"], digits["ucell"], digits["vcell"]), (2, 3, 5, 7))
    assert np.all(np.diff(flat) > 0)  # ordered by event, sensor, ucell, vcell
    empty = digits_of(torch.zeros(1, 2, 3, 4, dtype=torch.uint8))
    assert all(len(value) == 0 for value in empty.values()) and empty["sensor"].dtype == np.int16
    with pytest.raises(ValueError, match="uint8"):
        digits_of(torch.zeros(1, 2, 3, 4))
