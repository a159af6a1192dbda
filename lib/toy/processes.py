"""Physics processes of the toy sample: jet multiplicity, flavour fractions, jet kinematics.

Flavours are indexed internally as 0 = b, 1 = c, 2 = light (order of :data:`FLAVOURS`);
the labels written to the files follow the usual truth convention 5 = b, 4 = c, 0 = light.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAVOURS: tuple[int, int, int] = (5, 4, 0)
FLAVOUR_NAMES: dict[int, str] = {5: "b", 4: "c", 0: "light"}
PT_MIN = 20.0
ETA_MAX = 2.5
MASS_FRACTION_SHAPE = 4.0
MASS_FRACTION_SCALE = 0.025


@dataclass(frozen=True)
class Process:
    """Parameters of one process: run number, weights, jet multiplicity and per-flavour kinematics."""

    name: str
    run: int
    weight: float
    weight_spread: float
    extra_jets_mean: float
    flavour_fractions: tuple[float, float, float]
    pt_mean: tuple[float, float, float]
    pt_shape: float


PROCESSES: dict[str, Process] = {
    "ttbar": Process(
        name="ttbar",
        run=410470,
        weight=0.8,
        weight_spread=0.05,
        extra_jets_mean=3.5,
        flavour_fractions=(0.30, 0.10, 0.60),
        pt_mean=(70.0, 55.0, 45.0),
        pt_shape=2.0,
    ),
    "zprime": Process(
        name="zprime",
        run=800030,
        weight=0.05,
        weight_spread=0.05,
        extra_jets_mean=0.5,
        flavour_fractions=(0.35, 0.25, 0.40),
        pt_mean=(400.0, 300.0, 220.0),
        pt_shape=1.5,
    ),
}


def get_process(process: str | Process) -> Process:
    """Return the :class:`Process` for a name (or pass one through), failing loudly on unknown names."""
    if isinstance(process, Process):
        return process
    try:
        return PROCESSES[process]
    except KeyError:
        raise ValueError(f"unknown toy process {process!r}; known: {sorted(PROCESSES)}") from None


def flavour_index(labels: np.ndarray) -> np.ndarray:
    """Map truth labels (5, 4, 0) to flavour indices (0, 1, 2)."""
    labels = np.asarray(labels)
    index = np.full(labels.shape, -1, dtype=np.int64)
    for i, label in enumerate(FLAVOURS):
        index[labels == label] = i
    if np.any(index < 0):
        raise ValueError("flavour labels must be 5 (b), 4 (c) or 0 (light)")
    return index


def draw_multiplicities(process: Process, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw ``size`` jet multiplicities, 2 + Poisson(extra_jets_mean)."""
    return 2 + rng.poisson(process.extra_jets_mean, size=size).astype(np.int64)


def draw_weights(process: Process, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw event weights, a per-process constant times (1 + small Gaussian), as float32."""
    spread = 1.0 + process.weight_spread * rng.standard_normal(size)
    return (process.weight * spread).astype(np.float32)


def draw_jets(process: Process, rng: np.random.Generator, n_jets: int) -> dict[str, np.ndarray]:
    """Draw flavour index, pt, eta, phi and mass of ``n_jets`` independent jets (float64 kinematics)."""
    cumulative = np.cumsum(process.flavour_fractions)
    flavour = np.minimum(np.searchsorted(cumulative / cumulative[-1], rng.random(n_jets), side="right"), 2)
    excess_mean = np.asarray(process.pt_mean)[flavour] - PT_MIN
    pt = PT_MIN + rng.gamma(process.pt_shape, 1.0, size=n_jets) * excess_mean / process.pt_shape
    eta = rng.uniform(-ETA_MAX, ETA_MAX, size=n_jets)
    phi = rng.uniform(-np.pi, np.pi, size=n_jets)
    mass = pt * rng.gamma(MASS_FRACTION_SHAPE, MASS_FRACTION_SCALE, size=n_jets)
    return {"flavour": flavour.astype(np.int64), "pt": pt, "eta": eta, "phi": phi, "mass": mass}
