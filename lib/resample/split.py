"""Counter-based randomness: the split of each event and one uniform per jet.

Nothing here draws from a stream, so a jet's fate depends only on (seed, split, event hash,
jet position) and never on which chunk it arrived in or how many jets came before it. The
mix is the splitmix64 finaliser of :mod:`tracerflow.hashing` (a bijection of uint64 with full
avalanche), salted with seeds derived from the base seed by :func:`tracerflow.seeding.derive_seed`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tracerflow.hashing import splitmix64
from tracerflow.seeding import derive_seed

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MANTISSA_SHIFT = np.uint64(11)
_TWO_TO_MINUS_53 = 2.0**-53


def unit_uniform(bits: np.ndarray) -> np.ndarray:
    """Map uint64 bits to float64 uniforms in [0, 1) using their top 53 bits."""
    return (np.asarray(bits, dtype=np.uint64) >> _MANTISSA_SHIFT).astype(np.float64) * _TWO_TO_MINUS_53


def split_salt(seed: int) -> np.uint64:
    """Salt of the split assignment, derived from the base seed."""
    return np.uint64(derive_seed(seed, "split"))


def split_of(hashes: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Index of the split of each event: a seeded uniform of its hash cut at the cumulative fractions.

    Jets of one event share the hash and therefore the split; an event keeps its split when
    other samples or files are added.
    """
    u = unit_uniform(splitmix64(np.asarray(hashes, dtype=np.uint64) ^ split_salt(seed)))
    split = np.zeros(u.shape, dtype=np.int16)
    for bound in np.cumsum(np.asarray(fractions, dtype=np.float64))[:-1]:
        split += u >= bound
    return split


def jet_salts(seed: int, split_names: Sequence[str]) -> np.ndarray:
    """One uint64 salt per split for the per-jet draws, derived from the base seed."""
    return np.array([derive_seed(seed, "resample", "jet", name) for name in split_names], dtype=np.uint64)


def jet_uniforms(hashes: np.ndarray, items: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per jet from splitmix64(splitmix64(hash ^ salt) + item * golden).

    The inner mix decorrelates events, the outer one the jets of an event; ``salts`` is one
    salt per jet (that of its split).
    """
    x = splitmix64(np.asarray(hashes, dtype=np.uint64) ^ salts)
    with np.errstate(over="ignore"):
        x += np.asarray(items).astype(np.uint64) * GOLDEN
    return unit_uniform(splitmix64(x))
