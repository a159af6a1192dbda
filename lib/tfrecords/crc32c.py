"""CRC-32C (Castagnoli) for many equal-length records at once, in numpy.

TFRecord frames carry a masked CRC-32C of each record. Computing it record by record in
Python would cap the writer at a few thousand jets per second, so the CRC runs over all records
of a block together: a loop over 8-byte words of the records, vectorised over the records,
using slicing-by-8 folded into four 64 Ki-entry tables (two bytes per lookup).
"""
from __future__ import annotations

import numpy as np

POLY = 0x82F63B78
MASK_DELTA = 0xA282EAD8
_BLOCK_RECORDS = 4096


def _byte_tables() -> np.ndarray:
    """T[k][b]: the CRC register after byte ``b`` followed by ``k`` zero bytes (k = 0..7)."""
    t = np.zeros((8, 256), dtype=np.uint32)
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        t[0, b] = c
    for k in range(1, 8):
        prev = t[k - 1]
        t[k] = (prev >> 8) ^ t[0][prev & 0xFF]
    return t


_T = _byte_tables()
_W = np.arange(65536, dtype=np.uint32)
_LO = _W & 0xFF
_HI = _W >> 8
# one 16-bit lookup per pair of bytes: bytes 0-1, 2-3 of the word xored with the register, then 4-5, 6-7
_U = np.stack([_T[7][_LO] ^ _T[6][_HI], _T[5][_LO] ^ _T[4][_HI], _T[3][_LO] ^ _T[2][_HI], _T[1][_LO] ^ _T[0][_HI]])


def crc32c(data: bytes) -> int:
    """CRC-32C of one byte string (reference implementation, byte at a time)."""
    crc = 0xFFFFFFFF
    t0 = _T[0]
    for byte in data:
        crc = int(t0[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc: np.ndarray | int) -> np.ndarray | int:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant (mod 2**32)."""
    if isinstance(crc, (int, np.integer)):
        crc = int(crc)
        return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF
    crc = np.asarray(crc, dtype=np.uint32)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(MASK_DELTA)


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of every row of a ``(n, length)`` uint8 array, as ``(n,)`` uint32."""
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 array, got {rows.dtype} {rows.shape}")
    out = np.empty(len(rows), dtype=np.uint32)
    for start in range(0, len(rows), _BLOCK_RECORDS):
        out[start : start + _BLOCK_RECORDS] = _crc_block(rows[start : start + _BLOCK_RECORDS])
    return out


def _crc_block(rows: np.ndarray) -> np.ndarray:
    n, length = rows.shape
    n_words = length // 8
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    if n_words:
        # (2 * n_words, n): the records' little-endian 32-bit words, one contiguous row per position
        words = np.ascontiguousarray(rows[:, : 8 * n_words]).view("<u4").T.copy()
        u0, u1, u2, u3 = _U
        one, tmp = np.empty(n, np.uint32), np.empty(n, np.uint32)
        lo, hi = np.empty(n, np.intp), np.empty(n, np.intp)
        # preallocated outputs, intp indices and mode="clip" keep np.take from converting or buffering
        for i in range(n_words):
            np.bitwise_xor(crc, words[2 * i], out=one)
            np.bitwise_and(one, 0xFFFF, out=lo)
            np.right_shift(one, 16, out=hi)
            np.take(u0, lo, out=crc, mode="clip")
            np.take(u1, hi, out=tmp, mode="clip")
            crc ^= tmp
            np.bitwise_and(words[2 * i + 1], 0xFFFF, out=lo)
            np.right_shift(words[2 * i + 1], 16, out=hi)
            np.take(u2, lo, out=tmp, mode="clip")
            crc ^= tmp
            np.take(u3, hi, out=tmp, mode="clip")
            crc ^= tmp
    t0 = _T[0]
    eight, low8 = np.uint32(8), np.uint32(0xFF)
    for j in range(8 * n_words, length):
        crc = t0[(crc ^ rows[:, j]) & low8] ^ (crc >> eight)
    return crc ^ np.uint32(0xFFFFFFFF)
