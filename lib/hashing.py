"""Event hashes and fold assignment.

hash = splitmix64(key + entry * G), where key is the 8-byte blake2b of (sample, logical file,
tree). The key carries DESIGN's blake2b identity of the file; the splitmix64 finaliser is a
bijection of uint64, so hashes are unique within a file by construction and computed for a
whole chunk in numpy (a per-event blake2b call runs at ~1M/s, as slow as reading the file).
Collisions across files are checked on ingest and raise :class:`HashCollision`.
"""
from __future__ import annotations

import hashlib

import numpy as np

from tracerflow.seeding import derive_seed

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class HashCollision(RuntimeError):
    """Two distinct events received the same hash."""


def file_key(sample: str, logical_file: str, tree: str) -> np.uint64:
    """blake2b (8 bytes) of the identity of one tree in one file of one sample."""
    text = "\x1f".join((sample, logical_file.replace("\\", "/"), tree)).encode("utf-8")
    return np.uint64(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little"))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, a bijection on uint64 with good avalanche."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def event_hashes(sample: str, logical_file: str, tree: str, entries: np.ndarray) -> np.ndarray:
    """uint64 hash of each entry of one tree."""
    key = file_key(sample, logical_file, tree)
    with np.errstate(over="ignore"):
        return splitmix64(key + np.asarray(entries, dtype=np.uint64) * _GOLDEN)


def hash_hex(value: int | np.integer) -> str:
    """The 16-hex-digit form of a hash used in logs and lookups."""
    return f"{int(value) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def parse_hash(value: int | str | np.integer) -> int:
    """Accept a hash as an integer or as its hex form."""
    if isinstance(value, str):
        return int(value, 16)
    return int(value) & 0xFFFF_FFFF_FFFF_FFFF


def check_unique(hashes: np.ndarray, where: str) -> None:
    """Raise :class:`HashCollision` naming ``where`` and the first repeated hash."""
    ordered = np.sort(np.asarray(hashes, dtype=np.uint64))
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        raise HashCollision(
            f"{where}: {len(repeated)} repeated event hash(es), first {hash_hex(repeated[0])}; "
            "two files share a sample name, logical file name and tree, or the input lists a file twice"
        )


def fold_of(hashes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of each event: a seeded mix of its hash mod ``k`` (stable as samples are added)."""
    salt = np.uint64(derive_seed(seed, "fold"))
    return (splitmix64(np.asarray(hashes, dtype=np.uint64) ^ salt) % np.uint64(k)).astype(np.int16)
