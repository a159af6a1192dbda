"""Training a background generator on the reference simulation: a Wasserstein GAN with gradient
penalty (WGAN-GP), resumable from checkpoints, every random choice keyed by the seed and the step.

Why WGAN-GP and not the hinge loss: the images are almost empty (an occupancy of ~0.5%), so a
critic that separates real from generated early saturates a hinge loss and its gradients vanish
for the generator; the Wasserstein critic keeps a useful gradient however far apart the two are,
and the gradient penalty keeps it 1-Lipschitz without clipping or spectral normalisation. Its
cost, several critic steps per generator step, is small at these sizes (docs/decisions.md).

What is learnt from: each step's batch of real events is simulated afresh by
:mod:`tracerflow.toy.pixel_background` from hashes keyed by (seed, step), turned into images in
[-1, 1] by :func:`encode` (the inverse of :func:`~tracerflow.background.models.decode_adc`, an
empty pixel at -1). The critic sees an event's
sensors as the channels of one image, so it judges the sensors of an event together (their
correlation, and which sensor is which). Generated latents come from per-event generators keyed
by (seed, step, index). So training is a function of (config, seed): a run stopped at a
checkpoint and resumed gives the same weights as one that was not (a test compares them).

From a config: :func:`fit_payload` turns a validated ``background`` block and the framework's seed
(``project.seed``) into the payload's model, state and metadata, training an image model or fitting
the clusters model; TrainBackgroundGenerator and the build of the shipped store
(:mod:`.ship`) both call it, so the shipped payload is the task's for the default block.

Contract with its neighbours: models from :mod:`.models`, the payload written into a
:class:`~tracerflow.background.conditions.ConditionsStore` by the caller (TrainBackgroundGenerator,
:mod:`.ship`) with the metadata of :func:`fit_payload` (:func:`payload_metadata`); checkpoints are
files of this module's own (``.pt`` state dicts, written atomically, read with ``weights_only=True``).
Nothing here imports luigi.
"""
from __future__ import annotations

import io
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from tracerflow.background.models import BackgroundModel, build_model
from tracerflow.io.atomic import write_atomic
from tracerflow.seeding import derive_seed
from tracerflow.toy.pixel_background import BackgroundPhysics, dense, simulate_events
from tracerflow.toy.pixels import PixelGeometry

CHECKPOINT_LAYOUT = "tracerflow.background.checkpoint"


@dataclass(frozen=True)
class TrainSettings:
    """One training run (the ``background.train`` block and the model, geometry and seed)."""

    model: str
    geometry: PixelGeometry
    seed: int
    steps: int
    batch_size: int
    critic_steps: int
    learning_rate: float
    gradient_penalty: float
    checkpoint_every: int


def encode(adc: np.ndarray | Tensor) -> Tensor:
    """8-bit charges -> images in [-1, 1] as the generators draw them: an empty pixel at -1, a
    charge at the middle of the interval that :func:`~tracerflow.background.models.decode_adc`
    truncates back to it (``256**x - 1 = adc + 0.5``), so decoding gives every charge back."""
    x = torch.as_tensor(np.asarray(adc), dtype=torch.float32)
    return torch.where(x == 0, torch.full_like(x, -1.0), (torch.log2(x + 1.5) / 4.0 - 1.0).clamp(max=1.0))


class Critic(nn.Module):
    """A convolutional critic over an event's sensors as channels: strided 4x4 convolutions with
    LeakyReLU (no batch statistics: the gradient penalty needs a per-sample critic) down to a few
    pixels, then a linear map to one score."""

    def __init__(self, geometry: PixelGeometry, width: int = 32, depth: int | None = None) -> None:
        super().__init__()
        depth = depth or max(1, min(5, int(math.log2(min(geometry.height, geometry.width))) - 2))
        layers: list[nn.Module] = []
        channels, h, w = geometry.n_sensors, geometry.height, geometry.width
        for i in range(depth):
            out = width * 2 ** min(i, 3)
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(channels * h * w, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.score(self.features(images).flatten(1)).squeeze(1)


def real_batch(settings: TrainSettings, physics: BackgroundPhysics, step: int) -> Tensor:
    """The simulated events of one step (their hashes keyed by seed and step), as images."""
    hashes = np.array([derive_seed(settings.seed, "background-train", step, i) for i in range(settings.batch_size)],
                      dtype=np.uint64)
    _, digits = simulate_events(settings.geometry, physics, settings.seed, hashes)
    return encode(dense(settings.geometry, digits, len(hashes)))


def fake_latents(model: BackgroundModel, seed: int, step: int, n: int) -> dict[str, Tensor]:
    """Latents of ``n`` generated events of one step, each from its own keyed generator."""
    per_event = []
    for i in range(n):
        generator = torch.Generator().manual_seed(derive_seed(seed, "background-fake", step, i))
        per_event.append(model.sample_latents(generator))
    return {key: torch.cat([lat[key] for lat in per_event]) for key in per_event[0]}


def _penalty(critic: Critic, real: Tensor, fake: Tensor, mix: Tensor) -> Tensor:
    between = (mix * real + (1.0 - mix) * fake).requires_grad_(True)
    grads, = torch.autograd.grad(critic(between).sum(), between, create_graph=True)
    return ((grads.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


@dataclass
class TrainState:
    """Where a training run is: the step reached and the loss history (per generator step)."""

    step: int
    critic_loss: list[float]
    generator_loss: list[float]
    wasserstein: list[float]


def train(settings: TrainSettings, physics: BackgroundPhysics, checkpoint: Path,
          progress: Callable[[TrainState], None] | None = None) -> tuple[BackgroundModel, TrainState]:
    """Train ``settings.model`` for ``settings.steps`` generator steps, resuming from
    ``checkpoint`` when it holds a run of the same settings (else starting afresh), writing it
    every ``checkpoint_every`` steps and at the end. Returns the generator (eval mode) and state."""
    torch.manual_seed(derive_seed(settings.seed, "background-init"))
    model = build_model(settings.model, settings.geometry)
    critic = Critic(settings.geometry)
    opt_g = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=settings.learning_rate, betas=(0.0, 0.9))
    state = TrainState(0, [], [], [])
    resumed = _load_checkpoint(checkpoint, settings)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        critic.load_state_dict(resumed["critic"])
        opt_g.load_state_dict(resumed["opt_g"])
        opt_d.load_state_dict(resumed["opt_d"])
        state = TrainState(**resumed["state"])
    model.train(), critic.train()
    while state.step < settings.steps:
        step = state.step
        rng = torch.Generator().manual_seed(derive_seed(settings.seed, "background-penalty", step))
        for k in range(settings.critic_steps):
            real = real_batch(settings, physics, step * settings.critic_steps + k)
            with torch.no_grad():
                fake = model(fake_latents(model, settings.seed, step * (settings.critic_steps + 1) + k,
                                          settings.batch_size))
            mix = torch.rand((len(real), 1, 1, 1), generator=rng)
            distance = critic(real).mean() - critic(fake).mean()
            loss_d = -distance + settings.gradient_penalty * _penalty(critic, real, fake, mix)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        fake = model(fake_latents(model, settings.seed, step * (settings.critic_steps + 1) + settings.critic_steps,
                                  settings.batch_size))
        loss_g = -critic(fake).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        state.step += 1
        state.critic_loss.append(float(loss_d.detach()))
        state.generator_loss.append(float(loss_g.detach()))
        state.wasserstein.append(float(distance.detach()))
        if progress is not None:
            progress(state)
        if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
            _save_checkpoint(checkpoint, settings, model, critic, opt_g, opt_d, state)
    return model.eval(), state


def payload_metadata(model: BackgroundModel, settings: TrainSettings, physics: BackgroundPhysics,
                     state: TrainState) -> dict[str, Any]:
    """What a trained generator's payload records: how to rebuild the model, and what it learnt from."""
    train = asdict(settings)
    train["geometry"] = settings.geometry.as_dict()
    return {"model": model.config(), "train": train, "physics": asdict(physics), "steps": state.step,
            "final_wasserstein": state.wasserstein[-1] if state.wasserstein else None}


def _settings_key(settings: TrainSettings) -> dict[str, Any]:
    key = asdict(settings)
    key["geometry"] = settings.geometry.as_dict()
    key.pop("steps")  # a run may be continued to more steps
    key.pop("checkpoint_every")
    return key


def _save_checkpoint(path: Path, settings: TrainSettings, model: nn.Module, critic: nn.Module,
                     opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, state: TrainState) -> None:
    buffer = io.BytesIO()
    torch.save({"layout": CHECKPOINT_LAYOUT, "settings": _settings_key(settings), "model": model.state_dict(),
                "critic": critic.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "state": asdict(state)}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def _load_checkpoint(path: Path, settings: TrainSettings) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it is one of a run with these settings (None otherwise:
    missing, unreadable or of other settings; a fresh run overwrites it)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:
        return None
    if not isinstance(data, dict) or data.get("layout") != CHECKPOINT_LAYOUT \
            or data.get("settings") != _settings_key(settings):
        return None
    return data


def fit_clusters(settings: TrainSettings, physics: BackgroundPhysics, events: int,
                 progress: Callable[[str], None] | None = None) -> tuple[BackgroundModel, TrainState, dict[str, Any]]:
    """The ``clusters`` model (:mod:`.clusters`) fitted by maximum likelihood to ``events``
    simulated events (hashes keyed by the seed and the event's index): no steps, no checkpoint,
    a function of (settings, physics, events). Returns the model (eval mode), a :class:`TrainState`
    without steps (for the payload's metadata) and what the fit found."""
    from tracerflow.background.clusters import fit_tables

    hashes = np.array([derive_seed(settings.seed, "background-fit", i) for i in range(events)], dtype=np.uint64)
    if progress is not None:
        progress(f"simulating {events:,} events")
    _, digits = simulate_events(settings.geometry, physics, settings.seed, hashes)
    if progress is not None:
        progress("fitting the cluster tables and the intensity")
    model, info = fit_tables(settings.geometry, digits, events)
    return model, TrainState(0, [], [], []), info


def train_settings(block: dict[str, Any], framework_seed: int) -> TrainSettings:
    """The settings of a validated ``background`` block; its seed by Belle II's rule from
    ``framework_seed`` (``project.seed``) when the block names none."""
    from tracerflow.background.generator import seed_from_framework
    from tracerflow.toy.pixels import geometry

    train = block["train"]
    return TrainSettings(model=block["model"], geometry=geometry(block["geometry"]),
                         seed=seed_from_framework(framework_seed) if block["seed"] is None else block["seed"],
                         steps=train["steps"], batch_size=train["batch_size"], critic_steps=train["critic_steps"],
                         learning_rate=train["learning_rate"], gradient_penalty=train["gradient_penalty"],
                         checkpoint_every=train["checkpoint_every"])


def fit_payload(block: dict[str, Any], framework_seed: int, progress: Callable[[float, str], None] | None = None,
                checkpoint: Path | None = None) -> tuple[BackgroundModel, TrainState, dict[str, Any]]:
    """The generator of a validated ``background`` block, made from the reference simulation, and
    its payload's metadata: the clusters model fitted (:func:`fit_clusters`, ``train.fit_events``
    events; no steps, no checkpoint; the metadata adds what the fit found under ``fit``), an image
    model trained (:func:`train`, resuming from ``checkpoint``; None: a temporary one, discarded).
    ``progress(done, text)``: the fraction of the work done (0 to 1) and what is being done.
    Returns the model (eval mode), its :class:`TrainState` and the metadata; the payload is
    ``model.state_dict()``. A function of (block, framework_seed)."""
    settings = train_settings(block, framework_seed)
    physics = BackgroundPhysics.of(block["physics"])
    if settings.model == "clusters":  # sparse, fitted by maximum likelihood: no steps, no checkpoint
        said = None if progress is None else lambda text: progress(0.5, text)
        model, state, fitted = fit_clusters(settings, physics, block["train"]["fit_events"], progress=said)
        return model, state, {**payload_metadata(model, settings, physics, state), "fit": fitted}
    report = None if progress is None else lambda s: progress(
        s.step / settings.steps, f"step {s.step} of {settings.steps}, Wasserstein estimate {s.wasserstein[-1]:.4f}")
    if checkpoint is None:
        with tempfile.TemporaryDirectory(prefix="tracerflow-background-") as scratch:
            model, state = train(settings, physics, Path(scratch) / f"{settings.model}.checkpoint.pt", progress=report)
    else:
        model, state = train(settings, physics, checkpoint, progress=report)
    return model, state, payload_metadata(model, settings, physics, state)
