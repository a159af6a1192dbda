"""The toy's reference background simulation of the pixel detector: what a background generator
is trained on and judged against.

Per event, a luminosity-like intensity ``I ~ Gamma(k, 1/k)`` (mean 1; or given) scales every
sensor's mean number of background clusters, so the occupancies of one event's sensors are
correlated (correlation ``~ Var(I) / (Var(I) + 1/(I rate))``); the mean depends on the sensor:
the inner layer sees more, and sensors of one layer differ by a smooth modulation around the
ladder ring. A cluster has a centre drawn uniformly on its sensor, a shape from a small table
(single pixels, pairs along u or v, L-shapes, lines, squares) and a total charge from a
Landau-like (Moyal) spectrum, shared among its pixels with the seed pixel largest; Gaussian noise
is added to each pixel, pixels of overlapping clusters add up, and pixels below the noise
threshold are dropped (zero suppression) before the charge is stored as 8-bit ADC (<= 255).

Everything random of an event comes from a generator keyed by (seed, event hash): the digits of
an event do not depend on which other events are simulated with it, in which order or chunks.

Contract with its neighbours: geometry from :mod:`.pixels`; digits in the layout of
:func:`tracerflow.background.models.digits_of` (flat arrays ``event``, ``sensor``, ``ucell``,
``vcell``, ``charge``, sorted by event, sensor, ucell, vcell); :mod:`tracerflow.background`
trains on and compares with what this module simulates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..seeding import rng_for
from .pixels import PixelGeometry

#: Cluster shapes as (du, dv) offsets from the seed pixel, and how often each occurs.
SHAPES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 0),),
    ((0, 0), (1, 0)),
    ((0, 0), (0, 1)),
    ((0, 0), (1, 0), (0, 1)),
    ((0, 0), (1, 0), (2, 0)),
    ((0, 0), (1, 0), (0, 1), (1, 1)),
    ((0, 0), (1, 0), (2, 0), (1, 1), (2, 1)),
)
SHAPE_PROBABILITIES = (0.30, 0.22, 0.16, 0.12, 0.08, 0.08, 0.04)
_SIZES = np.array([len(s) for s in SHAPES])
_OFFSETS = np.array([o for s in SHAPES for o in s], dtype=np.int64)
_FIRST = np.concatenate([[0], np.cumsum(_SIZES)[:-1]])


@dataclass(frozen=True)
class BackgroundPhysics:
    """The reference simulation's knobs: the ``background.physics`` block (its defaults, stated in
    lib/config/schema.py, give an occupancy of ~0.5% on the inner layer)."""

    clusters_per_sensor: tuple[float, ...]  # mean per event at intensity 1, by layer (last repeats)
    ladder_modulation: float  # relative variation of the rate around a layer's ring of sensors
    intensity_shape: float  # k of the per-event intensity Gamma(k, 1/k)
    charge_mpv: float  # location of the cluster charge's Moyal spectrum, ADU
    charge_width: float  # its scale, ADU
    noise: float  # Gaussian noise per pixel, ADU
    threshold: float  # zero suppression: pixels below this many ADU are not stored

    @classmethod
    def of(cls, block: dict) -> "BackgroundPhysics":
        """From a validated ``background.physics`` block."""
        return cls(**{**block, "clusters_per_sensor": tuple(float(c) for c in block["clusters_per_sensor"])})

    @classmethod
    def default(cls, **changes) -> "BackgroundPhysics":
        """The schema's defaults, with ``changes``."""
        from tracerflow.config.schema import BACKGROUND
        from tracerflow.config.spec import Context

        block = BACKGROUND.fields["physics"].default_value("background.physics", Context("<defaults>"))
        return cls.of({**block, **changes})

    def sensor_rates(self, geometry: PixelGeometry) -> np.ndarray:
        """Mean clusters per event at intensity 1, per sensor."""
        layer = geometry.layer_of().astype(np.int64)
        base = np.asarray(self.clusters_per_sensor, dtype=np.float64)[np.minimum(layer, len(self.clusters_per_sensor) - 1)]
        ring = np.concatenate([np.arange(n) / n for n in geometry.layers])
        return base * (1.0 + self.ladder_modulation * np.cos(2.0 * np.pi * ring + 0.7 * layer))


def event_rng(seed: int, event_hash: int) -> np.random.Generator:
    """The generator of one event's background: keyed by the config seed and the event's hash."""
    return rng_for(seed, "pixel-background", int(event_hash) & 0xFFFF_FFFF_FFFF_FFFF)


def simulate_event(geometry: PixelGeometry, physics: BackgroundPhysics, rng: np.random.Generator,
                   intensity: float | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """One event's background: its intensity and its digits (``sensor``, ``ucell``, ``vcell``,
    ``charge``), sorted by sensor, ucell, vcell. ``intensity`` None: drawn."""
    k = physics.intensity_shape
    level = float(rng.gamma(k, 1.0 / k)) if intensity is None else float(intensity)
    rates = physics.sensor_rates(geometry) * level
    n = rng.poisson(rates)
    sensor = np.repeat(np.arange(geometry.n_sensors, dtype=np.int64), n)
    c = len(sensor)
    u0 = rng.integers(0, geometry.height, c)
    v0 = rng.integers(0, geometry.width, c)
    shape = rng.choice(len(SHAPES), size=c, p=SHAPE_PROBABILITIES)
    z = rng.standard_normal(c)
    total = np.maximum(physics.charge_mpv + physics.charge_width * -np.log(np.maximum(z * z, 1e-300)), 0.0)
    size = _SIZES[shape]
    cluster = np.repeat(np.arange(c), size)
    within = np.arange(len(cluster)) - np.repeat(np.cumsum(size) - size, size)
    offsets = _OFFSETS[_FIRST[shape][cluster] + within]
    share = np.where(within == 0, 1.0, rng.uniform(0.15, 0.6, len(cluster)))
    share /= np.bincount(cluster, weights=share, minlength=c)[cluster]
    charge = total[cluster] * share + rng.normal(0.0, physics.noise, len(cluster))
    u, v = u0[cluster] + offsets[:, 0], v0[cluster] + offsets[:, 1]
    inside = (u < geometry.height) & (v < geometry.width)
    flat = (sensor[cluster] * geometry.height + u) * geometry.width + v
    pixels, inverse = np.unique(flat[inside], return_inverse=True)
    summed = np.bincount(inverse, weights=charge[inside], minlength=len(pixels))
    keep = summed >= physics.threshold
    pixels, adc = pixels[keep], np.minimum(np.floor(summed[keep]), 255).astype(np.uint8)
    s, rest = np.divmod(pixels, geometry.height * geometry.width)
    uu, vv = np.divmod(rest, geometry.width)
    return level, {"sensor": s.astype(np.int16), "ucell": uu.astype(np.int16), "vcell": vv.astype(np.int16),
                   "charge": adc}


def simulate_events(geometry: PixelGeometry, physics: BackgroundPhysics, seed: int, hashes: np.ndarray,
                    intensity: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The background of each event of ``hashes``: intensities ``(events,)`` and flat digits with
    ``event`` (index into ``hashes``), sorted by event, sensor, ucell, vcell."""
    levels = np.empty(len(hashes))
    parts: list[dict[str, np.ndarray]] = []
    for i, h in enumerate(np.asarray(hashes, dtype=np.uint64)):
        levels[i], digits = simulate_event(geometry, physics, event_rng(seed, int(h)),
                                           None if intensity is None else float(intensity[i]))
        digits["event"] = np.full(len(digits["charge"]), i, dtype=np.int32)
        parts.append(digits)
    keys = ("event", "sensor", "ucell", "vcell", "charge")
    if not parts:
        return levels, {"event": np.zeros(0, np.int32), "sensor": np.zeros(0, np.int16), "ucell": np.zeros(0, np.int16),
                        "vcell": np.zeros(0, np.int16), "charge": np.zeros(0, np.uint8)}
    return levels, {k: np.concatenate([p[k] for p in parts]) for k in keys}


def dense(geometry: PixelGeometry, digits: dict[str, np.ndarray], n_events: int) -> np.ndarray:
    """The digits as ``(events, sensors, height, width)`` uint8 images (0: no digit)."""
    images = np.zeros((n_events, *geometry.shape), dtype=np.uint8)
    images[digits["event"], digits["sensor"], digits["ucell"], digits["vcell"]] = digits["charge"]
    return images
