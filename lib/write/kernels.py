"""Compiled loops of WriteTrainSample: padding compact tracks, float16 lookups and counts.

A train file stores tracks padded to ``max_tracks`` slots, about four in five of them empty.
Spreading the compact tracks into that layout with numpy takes a fill pass, an index build and
a scatter; a compiled loop writes each output byte once, and into a reused buffer only the
bytes that change (``stale``). The loops release the GIL, so several threads pad blocks at
once. Compiled code is cached beside this module after the first call.
"""
from __future__ import annotations

from typing import Mapping

import numba
import numpy as np

HALF_PATTERNS = 1 << 16


@numba.njit(nogil=True, cache=True)
def _pad(values: np.ndarray, counts: np.ndarray, row: int, width: int, fill, out: np.ndarray) -> None:
    # values: all tracks' items back to back, ``width`` per track; out: flat, ``row`` items per jet
    t = 0
    o = 0
    for i in range(counts.shape[0]):
        stop = counts[i] * width
        out[o:o + stop] = values[t:t + stop]
        out[o + stop:o + row] = fill
        t += stop
        o += row


@numba.njit(nogil=True, cache=True)
def _pad_lookup(columns, tables: np.ndarray, counts: np.ndarray, stale: np.ndarray, row: int, out: np.ndarray) -> None:
    # out: flat, ``row`` items per jet, ``len(columns)`` per track; slots from counts[i] to
    # stale[i] are cleared, later ones are padding already
    width = tables.shape[0]
    t = 0
    o = 0
    for i in range(counts.shape[0]):
        c = counts[i]
        for s in range(c):
            j = 0
            for col in columns:
                out[o + s * width + j] = tables[j, col[t + s]]
                j += 1
        for k in range(o + c * width, o + stale[i] * width):
            out[k] = 0
        t += c
        o += row


@numba.njit(nogil=True, cache=True)
def _pad_columns(columns, counts: np.ndarray, stale: np.ndarray, row: int, fill, out: np.ndarray) -> None:
    # out: flat, ``row`` items per jet, ``len(columns)`` per track, of the output's dtype
    width = len(columns)
    t = 0
    o = 0
    for i in range(counts.shape[0]):
        c = counts[i]
        for s in range(c):
            j = 0
            for col in columns:
                out[o + s * width + j] = col[t + s]
                j += 1
        for k in range(o + c * width, o + stale[i] * width):
            out[k] = fill
        t += c
        o += row


@numba.njit(nogil=True, cache=True)
def _valid(counts: np.ndarray, stale: np.ndarray, out: np.ndarray) -> None:
    for i in range(counts.shape[0]):
        for s in range(counts[i]):
            out[i, s] = 1
        for s in range(counts[i], stale[i]):
            out[i, s] = 0


@numba.njit(nogil=True, cache=True)
def _count_patterns(columns, out: np.ndarray) -> None:
    j = 0
    for col in columns:
        for t in range(col.shape[0]):
            out[j, col[t]] += 1
        j += 1


def pad_tracks(values: np.ndarray, counts: np.ndarray, max_tracks: int, fill: float | int = 0,
               out: np.ndarray | None = None) -> np.ndarray:
    """Compact per-track ``values`` (tracks back to back, ``counts`` per jet, any trailing axes) as
    ``(n_jets, max_tracks, ...)`` with ``fill`` in the slots after each jet's tracks, written into
    ``out`` when given."""
    values = np.asarray(values)
    tail = values.shape[1:]
    counts = _checked_counts(counts, len(values), max_tracks)
    out = _output(out, (len(counts), max_tracks) + tail, values.dtype)
    width = int(np.prod(tail, dtype=np.int64))
    if out.size:
        _pad(_as_integers(np.ascontiguousarray(values).reshape(-1)), counts, max_tracks * width, width,
             _as_integers(np.asarray(fill, dtype=values.dtype))[()], _as_integers(out.reshape(-1)))
    return out


def check_fits(columns: Mapping[str, np.ndarray], dtype: np.dtype) -> None:
    """Raise a ``ValueError`` naming the first of ``columns`` that holds a value integer ``dtype`` cannot."""
    info = np.iinfo(dtype)
    for name, col in columns.items():
        col = np.asarray(col)
        if col.size and (col.min() < info.min or col.max() > info.max):
            raise ValueError(f"track column {name!r} holds values outside the range of {np.dtype(dtype)} "
                             f"[{info.min}, {info.max}]: [{col.min()}, {col.max()}]")


def pad_columns(columns: Mapping[str, np.ndarray], counts: np.ndarray, max_tracks: int, fill: int,
                out: np.ndarray, checked: bool = False, stale: np.ndarray | None = None) -> np.ndarray:
    """Named integer per-track ``columns`` side by side in ``out``, ``(n_jets, max_tracks, len(columns))``
    of an integer dtype, ``fill`` in padding slots (see :func:`pad_lookup` for ``stale``). Unless
    ``checked`` (by :func:`check_fits`), a value ``out`` cannot hold is a ``ValueError`` naming its column."""
    arrays = [np.asarray(c).reshape(-1) for c in columns.values()]
    counts = _checked_counts(counts, len(arrays[0]) if arrays else 0, max_tracks)
    out = _output(out, (len(counts), max_tracks, len(arrays)), out.dtype)
    if not checked:
        check_fits(columns, out.dtype)
    if out.size and arrays:
        common = np.result_type(*arrays)
        _pad_columns(tuple(np.ascontiguousarray(c, dtype=common) for c in arrays), counts,
                     _stale(stale, counts, max_tracks), max_tracks * len(arrays), out.dtype.type(fill),
                     out.reshape(-1))
    elif out.size:
        out[...] = fill
    return out


def valid_slots(counts: np.ndarray, max_tracks: int, out: np.ndarray | None = None,
                stale: np.ndarray | None = None) -> np.ndarray:
    """``(n_jets, max_tracks)`` bool, true in each jet's first ``counts`` slots (into ``out`` when
    given; see :func:`pad_lookup` for ``stale``)."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    out = _output(out, (len(counts), max_tracks), np.dtype(bool))
    if out.size:
        _valid(counts, _stale(stale, counts, max_tracks), out.view(np.uint8))
    return out


def pad_lookup(columns: list[np.ndarray], tables: np.ndarray, counts: np.ndarray, max_tracks: int,
               out: np.ndarray | None = None, stale: np.ndarray | None = None) -> np.ndarray:
    """Float16 track ``columns`` mapped through ``tables[j]`` (one table per column over every float16
    bit pattern) and padded with zeros to ``(n_jets, max_tracks, len(columns))`` of the tables' dtype,
    written into ``out`` when given.

    ``stale[i]`` says how many leading slots of jet ``i`` in ``out`` may still hold an earlier
    block's values (a reused buffer); slots after it must already be padding and are not
    written. Default: all slots are written.
    """
    counts = _checked_counts(counts, len(columns[0]) if columns else 0, max_tracks)
    out = _output(out, (len(counts), max_tracks, len(columns)), tables.dtype)
    if out.size and columns:
        _pad_lookup(_bit_columns(columns), _as_integers(tables), counts, _stale(stale, counts, max_tracks),
                    max_tracks * len(columns), _as_integers(out.reshape(-1)))
    elif out.size:
        out[...] = 0
    return out


def count_half_patterns(columns: list[np.ndarray]) -> np.ndarray:
    """``(len(columns), 65536)`` counts of each float16 bit pattern in each float16 column."""
    out = np.zeros((len(columns), HALF_PATTERNS), dtype=np.int64)
    if columns:
        _count_patterns(_bit_columns(columns), out)
    return out


def _bit_columns(columns: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Float16 columns as uint16 views, all of one memory layout (the loops take a tuple of one type)."""
    bits = [np.asarray(c).reshape(-1).view(np.uint16) for c in columns]
    if len({b.flags.c_contiguous for b in bits}) > 1:
        bits = [np.ascontiguousarray(b) for b in bits]
    return tuple(bits)


def _checked_counts(counts: np.ndarray, n_tracks: int, max_tracks: int) -> np.ndarray:
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > max_tracks):
        raise ValueError(f"track counts must lie in [0, {max_tracks}], got [{counts.min()}, {counts.max()}]")
    if int(counts.sum()) != n_tracks:
        raise ValueError(f"track counts add up to {int(counts.sum())}, but {n_tracks} tracks were given")
    return counts


def _stale(stale: np.ndarray | None, counts: np.ndarray, max_tracks: int) -> np.ndarray:
    """Per jet, the slots a loop must clear up to: every slot unless ``stale`` says fewer may be dirty."""
    if stale is None:
        return np.full(len(counts), max_tracks, dtype=np.int64)
    stale = np.ascontiguousarray(stale, dtype=np.int64)
    if stale.shape != counts.shape or (stale.size and (stale.min() < 0 or stale.max() > max_tracks)):
        raise ValueError(f"stale must be {counts.shape} counts in [0, {max_tracks}]")
    return stale


def _output(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``out`` checked against the shape and dtype a loop writes, or a new array of them."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"output array is {out.shape} {out.dtype}, expected C-contiguous {shape} {np.dtype(dtype)}")
    return out


def _as_integers(array: np.ndarray) -> np.ndarray:
    """The same bytes as unsigned integers of the same width: the loops copy bits, never convert,
    and so work alike for float16 (which they cannot compute with), floats, ints and bools."""
    array = np.asarray(array)
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.kind in "fb" else array
