"""The generator networks of the pixel-detector background generator, modelled on Belle II's
PXDBackgroundGenerator (basf2 ``pxd/background_generator``): latents -> one event's sensor images
in [-1, 1] -> 8-bit charges (ADC) -> digits.

Three models share one interface (:class:`BackgroundModel`):

* ``convnet`` (Belle II): an independent 96-dim N(0, 1) latent per sensor image, a linear map to
  (512, h0, w0) with ``h0 = ceil(H / 32)``, ``w0 = ceil(W / 32)``, five Conv5x5-BN-ReLU-Upsample
  blocks (512 -> 512 -> 256 -> 128 -> 64 -> 32), a Conv5x5 to one channel, tanh, crop;
* ``resnet`` (Belle II): the same latents, a linear map to (256, h0, w0), five pre-activation
  residual blocks that each upsample x2 (256 -> 256 -> 128 -> 64 -> 32 -> 16), BN-ReLU-Conv3x3,
  tanh, crop;
* ``conditioned`` (tracerflow's): an event latent shared by the event's sensors, a latent per
  sensor, a learned sensor embedding and an optional per-event intensity mixed across the
  event's sensors by a small transformer encoder into a code per sensor, decoded by a narrow
  convolutional decoder (64 -> 64 -> 32 -> 32 -> 16 -> 8 Conv3x3-BN-ReLU blocks, nearest x2
  after the first four, a sub-pixel Conv3x3 8 -> 4 + PixelShuffle for the fifth x2), tanh, crop.
  Its sensors are correlated within an event and it knows which sensor it draws, which the
  Belle II models do not. About 0.6 s per event at the ``belle2`` geometry and 3 ms at
  ``default`` on 2 threads, against Belle II's convnet's 11 s and resnet's 17-30 s.

The crop keeps the central ``H x W`` of the ``32 h0 x 32 w0`` output (Belle II's
``x[:, 0, 3:-3, :]`` for 256 -> 250 rows). ``convnet`` and ``resnet`` keep Belle II's module
names (``fc``, ``features``; ``fc``, ``blocks``, ``norm``, ``conv``), so at the ``belle2``
geometry their state dicts have Belle II's keys and shapes.

Contract with its neighbours: a detector is a :class:`tracerflow.toy.pixels.PixelGeometry`. The
generator draws each event's latents from that event's own ``torch.Generator``
(:meth:`BackgroundModel.sample_latents`), stacks the per-event dicts with ``torch.cat`` and calls
the model in eval mode. In eval mode an event's images are bitwise the same whether it is run
alone or with other events and whatever ``torch.set_num_threads`` says (checked on CPU):

* events are computed one per pass, so every event meets the same kernels with the same shapes
  (MKL's sgemm gives a row of a batched ``nn.Linear`` different bits depending on the number of
  rows and the row's place among them);
* linear maps are computed row by row (:class:`RowLinear`), since MKL's sgemm also changes its
  summation with the thread count for a few rows (e.g. an event's 10 sensors);
* the residual shortcut's 1x1 convolution is pinned to oneDNN (torch sends a 1x1 convolution of
  fewer than 16 images to its own kernel when single-threaded and to oneDNN otherwise);
* attention sums explicitly, BatchNorm uses its running statistics, and :func:`decode_adc`
  avoids ``torch.pow``, whose vectorised and scalar paths differ in the last bit.

In training mode a batch is one pass and plain ``F.linear`` (BatchNorm uses batch statistics).
:func:`decode_adc` turns images into charges as Belle II does and :func:`digits_of` flattens
charges into the digit arrays (event, sensor, ucell, vcell, charge) the payloads and the overlay
consume. :meth:`BackgroundModel.config` is what a payload records to rebuild the model
(:func:`model_from_config`). Nothing here imports luigi.
"""
from __future__ import annotations

import abc
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tracerflow.toy.pixels import PixelGeometry
from tracerflow.toy.pixels import geometry as as_geometry

#: The image models (latents -> dense sensor images).
IMAGE_MODELS = ("convnet", "resnet", "conditioned")
#: Every model: the image models and the sparse cluster-level model (:mod:`.clusters`).
MODELS = IMAGE_MODELS + ("clusters",)

#: Belle II's latent size per sensor image.
LATENT_DIM = 96
#: Each model upsamples five times by two.
UPSAMPLING = 32
#: IEA-GAN's noise cut on the tanh output (about 7 ADU), :func:`decode_adc`'s default.
NOISE_CUT = -0.26


class RowLinear(nn.Linear):
    """``nn.Linear`` that in eval mode computes every row as its own (1 x in) @ (in x out)
    product (a batched matmul over a stride-0 view of the weight, no copy), so a row's bits
    depend neither on the other rows nor on the thread count; in training mode it is
    ``nn.Linear``. Its state dict is ``nn.Linear``'s."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return super().forward(x)
        rows = x.reshape(-1, 1, self.in_features)
        n = rows.shape[0]
        weight = self.weight.t().unsqueeze(0).expand(n, self.in_features, self.out_features)
        if self.bias is None:
            out = torch.bmm(rows, weight)
        else:
            out = torch.baddbmm(self.bias.view(1, 1, -1).expand(n, 1, self.out_features), rows, weight)
        return out.reshape(*x.shape[:-1], self.out_features)


class BackgroundModel(nn.Module, metaclass=abc.ABCMeta):
    """A generator of one event's sensor images from latents drawn per event.

    Subclasses set ``name``, define :meth:`latent_shapes` (per event, without the leading event
    dimension) and :meth:`_images` (validated latents -> ``(events, sensors, H, W)``).
    """

    name: str = ""
    #: whether :meth:`forward` takes an ``intensity``
    uses_intensity: bool = False

    def __init__(self, geometry: PixelGeometry) -> None:
        super().__init__()
        self.geometry = geometry
        self.h0 = math.ceil(geometry.height / UPSAMPLING)
        self.w0 = math.ceil(geometry.width / UPSAMPLING)

    @abc.abstractmethod
    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each latent's shape for one event, without the event dimension, in drawing order."""

    def options(self) -> dict[str, Any]:
        """The constructor's options beyond the geometry (JSON-able)."""
        return {}

    def config(self) -> dict[str, Any]:
        """What a payload records to rebuild this model: name, geometry and options."""
        return {"name": self.name, "geometry": self.geometry.as_dict(), **self.options()}

    def sample_latents(self, generator: torch.Generator) -> dict[str, Tensor]:
        """The latents of ONE event drawn from this event's own ``generator``: N(0, 1) float32,
        leading dimension 1, drawn in the order of :meth:`latent_shapes`."""
        return {
            key: torch.randn((1, *shape), generator=generator, dtype=torch.float32, device=generator.device)
            for key, shape in self.latent_shapes().items()
        }

    def forward(self, latents: dict[str, Tensor], intensity: Tensor | None = None) -> Tensor:
        """``(events, sensors, H, W)`` float32 in [-1, 1] from latents stacked over events
        (``torch.cat`` of :meth:`sample_latents` dicts) and, for a model that ``uses_intensity``,
        an optional intensity per event ``(events,)``.

        In eval mode the events are computed one per pass, so an event's images are bitwise the
        same whether it is run alone or with others (see the module's docstring); in training
        mode the batch is one pass (and BatchNorm uses the batch's statistics).
        """
        events = self._check_latents(latents)
        device = self._device()
        latents = {key: value.to(device=device, dtype=torch.float32) for key, value in latents.items()}
        if intensity is not None:
            if not self.uses_intensity:
                raise ValueError(f"the {self.name!r} model takes no intensity; only the conditioned model does")
            intensity = torch.as_tensor(intensity, dtype=torch.float32, device=device)
            if intensity.shape != (events,):
                raise ValueError(f"intensity must have shape ({events},) (one per event), got {tuple(intensity.shape)}")
        if self.training or events == 1:
            return self._images(latents, intensity, events)
        # eval: one event per pass, the same kernels on the same shapes whatever the batch
        return torch.cat(
            [
                self._images(
                    {key: value[i : i + 1] for key, value in latents.items()},
                    None if intensity is None else intensity[i : i + 1],
                    1,
                )
                for i in range(events)
            ]
        )

    @abc.abstractmethod
    def _images(self, latents: dict[str, Tensor], intensity: Tensor | None, events: int) -> Tensor:
        """``(events, sensors, H, W)`` in [-1, 1] from validated latents on the model's device."""

    def _check_latents(self, latents: dict[str, Tensor]) -> int:
        shapes = self.latent_shapes()
        if set(latents) != set(shapes):
            raise ValueError(f"the {self.name!r} model takes latents {sorted(shapes)}, got {sorted(latents)}")
        events = None
        for key, shape in shapes.items():
            value = latents[key]
            if value.dim() != len(shape) + 1 or tuple(value.shape[1:]) != shape:
                raise ValueError(
                    f"latent {key!r} must have shape (events, {', '.join(map(str, shape))}), got {tuple(value.shape)}"
                )
            if events is None:
                events = int(value.shape[0])
            elif value.shape[0] != events:
                raise ValueError(f"latents disagree on the number of events: {events} and {value.shape[0]} ({key!r})")
        if not events:
            raise ValueError("latents hold no event")
        return events

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _crop(self, images: Tensor, events: int) -> Tensor:
        """``(events * sensors, 1, 32 h0, 32 w0)`` -> the central ``(events, sensors, H, W)``."""
        geometry = self.geometry
        top = (images.shape[-2] - geometry.height) // 2
        left = (images.shape[-1] - geometry.width) // 2
        cropped = images[:, 0, top : top + geometry.height, left : left + geometry.width]
        return cropped.reshape(events, geometry.n_sensors, geometry.height, geometry.width)


class ConvNet(BackgroundModel):
    """Belle II's ConvNet generator: sensors are independent images of their own 96-dim latents."""

    name = "convnet"

    def __init__(self, geometry: PixelGeometry) -> None:
        super().__init__(geometry)
        self.fc = RowLinear(LATENT_DIM, 512 * self.h0 * self.w0)
        layers: list[nn.Module] = []
        for n_in, n_out in zip((512, 512, 256, 128, 64), (512, 256, 128, 64, 32)):
            layers += [
                nn.Conv2d(n_in, n_out, 5, 1, 2),
                nn.BatchNorm2d(n_out),
                nn.ReLU(inplace=True),
                nn.Upsample(scale_factor=2, mode="nearest"),
            ]
        layers.append(nn.Conv2d(32, 1, 5, 1, 2))
        self.features = nn.Sequential(*layers)

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"z": (self.geometry.n_sensors, LATENT_DIM)}

    def _images(self, latents: dict[str, Tensor], intensity: Tensor | None, events: int) -> Tensor:
        z = latents["z"].reshape(-1, LATENT_DIM)
        h = self.fc(z).view(-1, 512, self.h0, self.w0)
        return self._crop(torch.tanh(self.features(h)), events)


class ResidualBlock(nn.Module):
    """Belle II's pre-activation block: BN-ReLU-(Upsample)-Conv3x3-BN-ReLU-Conv3x3 plus a shortcut
    that is upsampled and, when it upsamples or the channels change, a 1x1 convolution."""

    def __init__(self, n_in: int, n_out: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(n_in, n_out, 1, 1, 0) if upsample or n_in != n_out else None
        self.norm1 = nn.BatchNorm2d(n_in)
        self.conv1 = nn.Conv2d(n_in, n_out, 3, 1, 1)
        self.norm2 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(x))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        if self.conv is not None:
            if self.training:
                x = self.conv(x)
            else:
                # A dilation means nothing to a 1x1 kernel but sends the convolution to oneDNN
                # whatever the thread count (torch's own kernel takes it single-threaded).
                x = F.conv2d(x, self.conv.weight, self.conv.bias, dilation=2)
        return h + x


class ResNet(BackgroundModel):
    """Belle II's ResNet generator: sensors are independent images of their own 96-dim latents."""

    name = "resnet"

    def __init__(self, geometry: PixelGeometry) -> None:
        super().__init__(geometry)
        self.fc = RowLinear(LATENT_DIM, 256 * self.h0 * self.w0)
        widths = (256, 256, 128, 64, 32, 16)
        self.blocks = nn.ModuleList(ResidualBlock(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:]))
        self.norm = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 1, 3, 1, 1)

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"z": (self.geometry.n_sensors, LATENT_DIM)}

    def _images(self, latents: dict[str, Tensor], intensity: Tensor | None, events: int) -> Tensor:
        h = self.fc(latents["z"].reshape(-1, LATENT_DIM)).view(-1, 256, self.h0, self.w0)
        for block in self.blocks:
            h = block(h)
        h = self.conv(F.relu(self.norm(h)))
        return self._crop(torch.tanh(h), events)


class SensorMixer(nn.Module):
    """A pre-norm transformer encoder layer over an event's sensors (batch first, no dropout):
    ``x + attention(norm(x))``, then ``+ feedforward(norm(.))`` with ReLU. Written out rather than
    ``nn.TransformerEncoderLayer`` so that its linear maps are :class:`RowLinear` and attention
    sums explicitly (the fused fast path multiplies the few sensors of an event with sgemm)."""

    def __init__(self, d_model: int, heads: int, feedforward: int) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not a multiple of the {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = RowLinear(d_model, 3 * d_model)
        self.out = RowLinear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff1 = RowLinear(d_model, feedforward)
        self.ff2 = RowLinear(feedforward, d_model)

    def attention(self, x: Tensor) -> Tensor:
        events, sensors, d_model = x.shape
        head = d_model // self.heads
        q, k, v = self.qkv(x).view(events, sensors, 3, self.heads, head).permute(2, 0, 3, 1, 4).unbind(0)
        # (events, heads, sensors, head): scores and mixing as explicit sums over the last axis
        scores = (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1) * head**-0.5
        weights = torch.softmax(scores, dim=-1)
        mixed = (weights.unsqueeze(-2) * v.transpose(-1, -2).unsqueeze(-3)).sum(-1)
        return self.out(mixed.transpose(1, 2).reshape(events, sensors, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.ff2(F.relu(self.ff1(self.norm2(x))))


class Conditioned(BackgroundModel):
    """An event's sensors drawn together: a transformer over the event's sensors mixes the shared
    event latent, each sensor's latent, its learned embedding and the event's intensity into a
    code per sensor, which a narrow decoder turns into the sensor's image.

    ``channels`` are the decoder's widths: the linear map's output and the five blocks'
    (``channels[0]`` -> ... -> ``channels[5]``), each Conv3x3-BN-ReLU, the first four followed by
    a nearest Upsample x2. The fifth x2 is a sub-pixel convolution (Conv3x3 to 4 phases, then
    PixelShuffle): as expressive as nearest Upsample + Conv3x3 to one channel (which amounts to a
    2x2 kernel per phase) but computed at a quarter of the pixels; at the belle2 geometry that
    last stage alone took 0.7 of 1.3 s per event on 2 threads.
    """

    name = "conditioned"
    uses_intensity = True
    EVENT_DIM = 32
    SENSOR_DIM = 32
    EMBED_DIM = 16
    D_MODEL = 64
    HEADS = 4
    LAYERS = 2
    FEEDFORWARD = 128
    CHANNELS = (64, 64, 32, 32, 16, 8)

    def __init__(self, geometry: PixelGeometry, channels: Sequence[int] = CHANNELS) -> None:
        super().__init__(geometry)
        channels = tuple(int(c) for c in channels)
        if len(channels) != 6 or min(channels) < 1:
            raise ValueError(f"the conditioned decoder needs 6 positive channel widths, got {channels}")
        self.channels = channels
        self.embedding = nn.Embedding(geometry.n_sensors, self.EMBED_DIM)
        self.default_intensity = nn.Parameter(torch.zeros(()))
        self.project = RowLinear(self.EVENT_DIM + self.SENSOR_DIM + self.EMBED_DIM + 1, self.D_MODEL)
        self.mixer = nn.Sequential(
            *(SensorMixer(self.D_MODEL, self.HEADS, self.FEEDFORWARD) for _ in range(self.LAYERS)),
            nn.LayerNorm(self.D_MODEL),
        )
        self.fc = RowLinear(self.D_MODEL, channels[0] * self.h0 * self.w0)
        layers: list[nn.Module] = []
        for block, (n_in, n_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers += [nn.Conv2d(n_in, n_out, 3, 1, 1), nn.BatchNorm2d(n_out), nn.ReLU(inplace=True)]
            if block < 4:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        # the fifth x2: a sub-pixel convolution (4 phases per pixel, then PixelShuffle), as able as
        # nearest Upsample + Conv3x3 to one channel but at a quarter of the pixels
        layers += [nn.Conv2d(channels[-1], 4, 3, 1, 1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*layers)

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"event": (self.EVENT_DIM,), "sensor": (self.geometry.n_sensors, self.SENSOR_DIM)}

    def options(self) -> dict[str, Any]:
        return {"channels": list(self.channels)}

    def codes(self, latents: dict[str, Tensor], intensity: Tensor | None, events: int) -> Tensor:
        """The per-sensor codes ``(events, sensors, 64)`` the decoder draws from."""
        sensors = self.geometry.n_sensors
        if intensity is None:
            intensity = self.default_intensity.expand(events)
        tokens = torch.cat(
            [
                latents["event"].unsqueeze(1).expand(events, sensors, self.EVENT_DIM),
                latents["sensor"],
                self.embedding.weight.unsqueeze(0).expand(events, sensors, self.EMBED_DIM),
                intensity.reshape(events, 1, 1).expand(events, sensors, 1),
            ],
            dim=-1,
        )
        return self.mixer(self.project(tokens))

    def _images(self, latents: dict[str, Tensor], intensity: Tensor | None, events: int) -> Tensor:
        code = self.codes(latents, intensity, events).reshape(-1, self.D_MODEL)
        h = self.fc(code).view(-1, self.channels[0], self.h0, self.w0)
        return self._crop(torch.tanh(self.decoder(h)), events)


_CLASSES: dict[str, type[BackgroundModel]] = {"convnet": ConvNet, "resnet": ResNet, "conditioned": Conditioned}


def build_model(name: str, geometry: PixelGeometry | str | dict, **options: Any) -> BackgroundModel:
    """A fresh (untrained) model ``name`` for ``geometry``; ``options`` are the model's own
    (``conditioned``: ``channels``; ``clusters``: its table sizes, see :mod:`.clusters`)."""
    if name == "clusters":
        from tracerflow.background.clusters import ClusterModel

        return ClusterModel(as_geometry(geometry), **options)
    if name not in _CLASSES:
        raise ValueError(f"no background model named {name!r} (known: {', '.join(MODELS)})")
    return _CLASSES[name](as_geometry(geometry), **options)


def options_of_state(name: str, state_dict: dict[str, Tensor]) -> dict[str, Any]:
    """The options of :func:`build_model` a bare state dict of model ``name`` was made with, read
    from its shapes (a checkpoint file carries no metadata): the table sizes of ``clusters``; none
    for the image models, whose shapes follow from the geometry."""
    if name != "clusters":
        return {}
    from tracerflow.background.clusters import ClusterModel

    return ClusterModel.options_of_state(state_dict)


def model_from_config(config: dict[str, Any]) -> BackgroundModel:
    """The (untrained) model a :meth:`BackgroundModel.config` describes."""
    options = {key: value for key, value in config.items() if key not in ("name", "geometry")}
    return build_model(config["name"], PixelGeometry.from_dict(config["geometry"]), **options)


def decode_adc(images: Tensor, noise_cut: float | None = NOISE_CUT) -> Tensor:
    """Images in [-1, 1] -> 8-bit charges as Belle II decodes them: values below ``noise_cut`` set
    to -1 (``None``: no cut), ``x = clamp(0.5 img + 0.5, 0, 1)``, ``adc = clamp(256**x - 1, 0,
    255)`` truncated to uint8. So -1 -> 0, 0 -> 15, 1 -> 255 (and the default cut, -0.26, leaves
    charges of 6 and more).

    ``256**x`` is computed as ``2**floor(8x) * exp(ln 2 * frac(8x))``: exact at the powers of two
    and the same bits for a pixel whatever the tensor's size or the thread count (``torch.pow``'s
    vectorised and scalar paths differ in the last bit, so a pixel's charge could depend on where
    it falls in the tensor).
    """
    x = images.to(torch.float32)
    if noise_cut is not None:
        x = torch.where(x < noise_cut, torch.full_like(x, -1.0), x)
    octaves = (0.5 * x + 0.5).clamp(0.0, 1.0) * 8.0
    whole = torch.floor(octaves)
    powers_of_two = torch.tensor([2.0**n for n in range(9)], dtype=torch.float32, device=x.device)
    value = powers_of_two[whole.to(torch.int64)] * torch.exp((octaves - whole) * math.log(2.0))
    return value.sub(1.0).clamp(0.0, 255.0).to(torch.uint8)


def digits_of(adc: Tensor) -> dict[str, np.ndarray]:
    """The fired pixels of ``(events, sensors, H, W)`` uint8 charges as flat digit arrays
    ``event`` (int32, index in the batch), ``sensor`` (int16), ``ucell`` (int16, row), ``vcell``
    (int16, column), ``charge`` (uint8), ordered by event, sensor, ucell, vcell."""
    if adc.dtype != torch.uint8 or adc.dim() != 4:
        raise ValueError(f"digits_of takes (events, sensors, H, W) uint8 charges, got {adc.dtype} {tuple(adc.shape)}")
    adc = adc.cpu()
    where = torch.nonzero(adc)
    charge = adc[tuple(where.unbind(1))]
    where = where.numpy()
    return {
        "event": where[:, 0].astype(np.int32),
        "sensor": where[:, 1].astype(np.int16),
        "ucell": where[:, 2].astype(np.int16),
        "vcell": where[:, 3].astype(np.int16),
        "charge": charge.numpy(),
    }
