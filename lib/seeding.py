"""Seeds derived from the one base seed of the config, never from the clock.

Every random choice in tracerflow draws from a ``numpy.random.Generator`` built by
:func:`rng_for`, keyed by the base seed and the names that make the choice unique
(stage, sample, file index, ...), so that re-running any single task reproduces it.
"""
from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(base_seed: int, *keys: object) -> int:
    """Return a 63-bit seed that depends only on ``base_seed`` and ``keys``."""
    text = "\x1f".join([str(int(base_seed))] + [str(k) for k in keys])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def rng_for(base_seed: int, *keys: object) -> np.random.Generator:
    """Return a generator whose stream is fixed by ``base_seed`` and ``keys``."""
    return np.random.Generator(np.random.PCG64(derive_seed(base_seed, *keys)))
