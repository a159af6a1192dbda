"""Toy tracking detector: track origins, resolutions and the vectorised track sampler.

Tracks of a jet are i.i.d. given (flavour, jet pt). Each track gets an origin (umami track
origin labels) from a flavour-dependent categorical, then kinematics and impact parameters
from origin-dependent distributions. :mod:`tracerflow.toy.likelihood` evaluates the exact
densities of the very same model, so every parameter lives here, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ORIGIN_LABELS: tuple[str, ...] = (
    "pileup",
    "fake",
    "primary",
    "fromB",
    "fromBC",
    "fromC",
    "otherSecondary",
)
MIN_TRACK_PT = 0.5
ANGULAR_REFERENCE_PT = 20.0
ANGULAR_EXPONENT = 0.3
D0_CONSTANT, D0_MS = 0.012, 0.060
Z0_CONSTANT, Z0_MS = 0.030, 0.100


@dataclass(frozen=True)
class Origin:
    """Distributions of one track origin.

    ``decay_length`` is the mean of the exponential lifetime scale L (mm, 0 for prompt tracks);
    d0 = s*L + N(0, d0_scale*sigma_d0) and z0 = t*z_ratio*L + N(0, z0 width), with s = +1 with
    probability ``sign_prob`` and t = +-1 with probability 1/2. The z0 width is
    ``z0_scale*sigma_z0`` unless ``z0_width`` (mm) is set.
    """

    name: str
    pt_fraction_mean: float
    angular_width: float
    decay_length: float
    sign_prob: float
    z_ratio: float
    d0_scale: float
    z0_scale: float
    z0_width: float | None = None


@dataclass(frozen=True)
class FlavourTracks:
    """Track model of one jet flavour: mean multiplicity a + b*log(pt/20) and origin fractions."""

    n_tracks_offset: float
    n_tracks_slope: float
    origin_fractions: tuple[float, float, float, float, float, float, float]


ORIGINS: tuple[Origin, ...] = (
    Origin("pileup", 0.030, 0.25, 0.0, 0.5, 0.0, 1.0, 1.0, z0_width=30.0),
    Origin("fake", 0.040, 0.20, 0.0, 0.5, 0.0, 3.0, 3.0),
    Origin("primary", 0.080, 0.10, 0.0, 0.5, 0.0, 1.0, 1.0),
    Origin("fromB", 0.150, 0.06, 0.35, 0.9, 0.8, 1.0, 1.0),
    Origin("fromBC", 0.130, 0.06, 0.25, 0.9, 0.8, 1.0, 1.0),
    Origin("fromC", 0.120, 0.07, 0.12, 0.9, 0.7, 1.0, 1.0),
    Origin("otherSecondary", 0.070, 0.12, 2.0, 0.6, 0.5, 1.0, 1.0),
)

TRACKING: tuple[FlavourTracks, FlavourTracks, FlavourTracks] = (
    FlavourTracks(6.5, 1.2, (0.03, 0.02, 0.35, 0.35, 0.20, 0.00, 0.05)),
    FlavourTracks(5.5, 1.1, (0.03, 0.02, 0.55, 0.00, 0.00, 0.33, 0.07)),
    FlavourTracks(4.5, 1.0, (0.03, 0.03, 0.86, 0.00, 0.00, 0.00, 0.08)),
)


@dataclass(frozen=True)
class OriginTable:
    """Origin and flavour parameters as arrays, indexed by origin (and flavour first)."""

    pt_fraction_mean: np.ndarray
    angular_width: np.ndarray
    decay_length: np.ndarray
    sign_prob: np.ndarray
    z_ratio: np.ndarray
    d0_scale: np.ndarray
    z0_scale: np.ndarray
    z0_width: np.ndarray
    origin_fractions: np.ndarray
    n_tracks_offset: np.ndarray
    n_tracks_slope: np.ndarray


@lru_cache(maxsize=1)
def origin_table() -> OriginTable:
    """Return the parameters of :data:`ORIGINS` and :data:`TRACKING` as read-only numpy arrays."""
    fractions = np.array([f.origin_fractions for f in TRACKING], dtype=np.float64)
    table = OriginTable(
        pt_fraction_mean=np.array([o.pt_fraction_mean for o in ORIGINS]),
        angular_width=np.array([o.angular_width for o in ORIGINS]),
        decay_length=np.array([o.decay_length for o in ORIGINS]),
        sign_prob=np.array([o.sign_prob for o in ORIGINS]),
        z_ratio=np.array([o.z_ratio for o in ORIGINS]),
        d0_scale=np.array([o.d0_scale for o in ORIGINS]),
        z0_scale=np.array([o.z0_scale for o in ORIGINS]),
        z0_width=np.array([np.nan if o.z0_width is None else o.z0_width for o in ORIGINS]),
        origin_fractions=fractions / fractions.sum(axis=1, keepdims=True),
        n_tracks_offset=np.array([f.n_tracks_offset for f in TRACKING]),
        n_tracks_slope=np.array([f.n_tracks_slope for f in TRACKING]),
    )
    for array in vars(table).values():
        array.flags.writeable = False
    return table


def sigma_d0(trk_pt: np.ndarray) -> np.ndarray:
    """Transverse impact-parameter resolution (mm) of a track of ``trk_pt`` GeV."""
    trk_pt = np.asarray(trk_pt, dtype=np.float64)
    return np.sqrt(D0_CONSTANT**2 + (D0_MS / trk_pt) ** 2)


def sigma_z0(trk_pt: np.ndarray) -> np.ndarray:
    """Longitudinal impact-parameter resolution (mm) of a track of ``trk_pt`` GeV."""
    trk_pt = np.asarray(trk_pt, dtype=np.float64)
    return np.sqrt(Z0_CONSTANT**2 + (Z0_MS / trk_pt) ** 2)


def angular_scale(jet_pt: np.ndarray) -> np.ndarray:
    """Factor (20/jet_pt)^0.3 that shrinks the track-to-jet angular spread of boosted jets."""
    return (ANGULAR_REFERENCE_PT / np.asarray(jet_pt, dtype=np.float64)) ** ANGULAR_EXPONENT


def mean_n_tracks(flavour: np.ndarray, jet_pt: np.ndarray) -> np.ndarray:
    """Poisson mean of the track multiplicity, a_f + b_f*log(jet_pt/20), for flavour indices."""
    table = origin_table()
    log_pt = np.log(np.asarray(jet_pt, dtype=np.float64) / ANGULAR_REFERENCE_PT)
    return table.n_tracks_offset[flavour] + table.n_tracks_slope[flavour] * log_pt


def draw_tracks(
    rng: np.random.Generator, flavour: np.ndarray, jet_pt: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw the tracks of jets with flavour indices ``flavour`` and (float32-exact) ``jet_pt``.

    Returns per-jet track counts and flat track arrays ordered by jet, pt-descending within a
    jet. Observables are rounded to float32 as written, so the likelihood of the stored values
    is the likelihood of the sample.
    """
    table = origin_table()
    jet_pt = np.asarray(jet_pt, dtype=np.float64)
    n_tracks = rng.poisson(mean_n_tracks(flavour, jet_pt)).astype(np.int64)
    jet = np.repeat(np.arange(len(jet_pt)), n_tracks)
    n = len(jet)
    pt_of_jet = jet_pt[jet]

    cumulative = np.cumsum(table.origin_fractions, axis=1)[flavour[jet]]
    origin = np.minimum((rng.random(n)[:, None] >= cumulative).sum(axis=1), len(ORIGINS) - 1)

    mean = table.pt_fraction_mean[origin]
    x_min = MIN_TRACK_PT / pt_of_jet
    span = -np.expm1(-(1.0 - x_min) / mean)
    x = x_min - mean * np.log1p(-rng.random(n) * span)
    trk_pt = (x * pt_of_jet).astype(np.float32)

    width = table.angular_width[origin] * angular_scale(pt_of_jet)
    deta = (width * rng.standard_normal(n)).astype(np.float32)
    dphi = (width * rng.standard_normal(n)).astype(np.float32)
    charge = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int32)

    s_d0 = sigma_d0(trk_pt)
    s_z0 = sigma_z0(trk_pt)
    length = table.decay_length[origin] * rng.standard_exponential(n)
    lifetime_sign = np.where(rng.random(n) < table.sign_prob[origin], 1.0, -1.0)
    z_sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    z0_sd = np.where(np.isnan(table.z0_width[origin]), table.z0_scale[origin] * s_z0, table.z0_width[origin])
    d0 = lifetime_sign * length + table.d0_scale[origin] * s_d0 * rng.standard_normal(n)
    z0 = z_sign * table.z_ratio[origin] * length + z0_sd * rng.standard_normal(n)

    order = np.lexsort((-trk_pt, jet))
    tracks = {
        "jet": jet[order],
        "pt": trk_pt[order],
        "deta": deta[order],
        "dphi": dphi[order],
        "d0": d0.astype(np.float32)[order],
        "z0": z0.astype(np.float32)[order],
        "sigma_d0": s_d0.astype(np.float32)[order],
        "sigma_z0": s_z0.astype(np.float32)[order],
        "charge": charge[order],
        "origin": origin.astype(np.int32)[order],
    }
    return n_tracks, tracks
