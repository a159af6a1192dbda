"""Compiled loops of WriteTrainSample: padding compact tracks, float16 lookups and counts.

A train file stores tracks padded to ``max_tracks`` slots, about four in five of them empty.
Spreading the compact tracks into that layout with numpy takes a fill pass, an index build and
a scatter; a compiled loop writes each output byte once, and into a reused buffer only the
bytes that change (``stale``). One loop, :func:`pad_track_rows`, makes all three track datasets
(inputs, valid, labels) and can store each piece into the file itself, so the kernel copies it
while it is still in cache. The loops release the GIL, so several threads pad blocks at once.
Compiled code is cached beside this module after the first call.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numba
import numpy as np
from numba import types

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


#: libc's ``pwrite``, called from compiled loops by symbol name (so that they can still be cached);
#: the buffer address and byte count are passed as integers, which is how the C ABI passes them.
_pwrite = types.ExternalFunction("pwrite", types.intp(types.intc, types.uintp, types.uintp, types.int64))
_mutex_lock = types.ExternalFunction("pthread_mutex_lock", types.intc(types.uintp))
_mutex_unlock = types.ExternalFunction("pthread_mutex_unlock", types.intc(types.uintp))


@numba.njit(nogil=True, cache=True)
def _store(fd: int, buffer: np.ndarray, nbytes: int, position: int) -> bool:
    # the first ``nbytes`` of ``buffer`` at ``position``; False when the system refuses (errno unread:
    # the caller repeats the write through os.pwrite, which raises the error with its number)
    address = buffer.ctypes.data
    while nbytes > 0:
        written = _pwrite(fd, address, nbytes, position)
        if written <= 0:
            return False
        address += written
        nbytes -= written
        position += written
    return True


@numba.njit(nogil=True, cache=True)
def _store_piece(fd: int, buffer: np.ndarray, piece: int, a: int, b: int, first_row: int) -> bool:
    # jets [a, b), held in the first rows of a buffer of ``piece`` rows, at their rows of a dataset
    # whose row 0 is at ``first_row`` in the file
    row = buffer.size // piece * buffer.itemsize
    return row == 0 or _store(fd, buffer, (b - a) * row, first_row + a * row)


@numba.njit(nogil=True, cache=True)
def _pad_inputs(columns, n_columns: int, tables: np.ndarray, concat: np.ndarray, counts: np.ndarray, a: int, b: int,
                t: int, stale: np.ndarray, max_tracks: int, inputs: np.ndarray) -> None:
    # jets [a, b) into rows 0.. of inputs: track columns (through tables when it has columns, else
    # copied), then the jet's concat values, zeros from counts to stale; each part its own loop,
    # since one loop with branches for all of them runs several times slower
    width = n_columns + concat.shape[1]
    if tables.shape[1]:
        _lookup_columns(columns, tables, counts, a, b, t, width, max_tracks, inputs)
    elif n_columns:
        _copy_columns(columns, counts, a, b, t, width, max_tracks, inputs)
    for i in range(b - a):
        c = counts[a + i]
        o = i * max_tracks * width
        if concat.shape[1]:
            for s in range(c):
                for k in range(concat.shape[1]):
                    inputs[o + s * width + n_columns + k] = concat[a + i, k]
        if stale[i] > c:
            inputs[o + c * width:o + stale[i] * width] = 0


@numba.njit(nogil=True, cache=True)
def _lookup_columns(columns, tables: np.ndarray, counts: np.ndarray, a: int, b: int, t: int, width: int,
                    max_tracks: int, inputs: np.ndarray) -> None:
    for i in range(b - a):
        o = i * max_tracks * width
        for s in range(counts[a + i]):
            j = 0
            for col in columns:
                inputs[o + s * width + j] = tables[j, col[t + s]]
                j += 1
        t += counts[a + i]


@numba.njit(nogil=True, cache=True)
def _copy_columns(columns, counts: np.ndarray, a: int, b: int, t: int, width: int, max_tracks: int,
                  inputs: np.ndarray) -> None:
    for i in range(b - a):
        o = i * max_tracks * width
        for s in range(counts[a + i]):
            j = 0
            for col in columns:
                inputs[o + s * width + j] = col[t + s]
                j += 1
        t += counts[a + i]


@numba.njit(nogil=True, cache=True)
def _pad_valid(counts: np.ndarray, a: int, b: int, stale: np.ndarray, max_tracks: int, valid: np.ndarray) -> None:
    # slices, not element loops: they compile to memset, several times faster here
    for i in range(b - a):
        o = i * max_tracks
        c = counts[a + i]
        valid[o:o + c] = 1
        if stale[i] > c:
            valid[o + c:o + stale[i]] = 0


@numba.njit(nogil=True, cache=True)
def _pad_labels(labels: np.ndarray, n_labels: int, fill, counts: np.ndarray, a: int, b: int, t: int, stale: np.ndarray,
                max_tracks: int, label_rows: np.ndarray) -> None:
    # labels: flat, n_labels per track, of label_rows' dtype, so each jet's are one run of items
    for i in range(b - a):
        c = counts[a + i]
        o = i * max_tracks * n_labels
        for k in range(c * n_labels):
            label_rows[o + k] = labels[t * n_labels + k]
        if stale[i] > c:
            label_rows[o + c * n_labels:o + stale[i] * n_labels] = fill
        t += c


@numba.njit(nogil=True, cache=True)
def _pad_rows(columns, n_columns: int, tables: np.ndarray, concat: np.ndarray, labels: np.ndarray, n_labels: int,
              label_fill, counts: np.ndarray, max_tracks: int, first_jet: int, first_track: int, piece: int,
              stale: np.ndarray, inputs: np.ndarray, valid: np.ndarray, label_rows: np.ndarray, fd: int,
              positions: np.ndarray, mutex: int) -> int:
    # Buffers are flat and hold ``piece`` jets: inputs ``max_tracks * (n_columns + n_concat)`` items
    # per jet, valid ``max_tracks``, label_rows ``max_tracks * n_labels``; an empty one is skipped.
    # Slots from counts[i] to stale[i] are cleared, and stale becomes counts. With ``fd`` each piece
    # is stored at positions[k] + jet * its row bytes, holding the pthread mutex at address ``mutex``
    # (when not 0); returns the first jet of a piece whose store failed, or -1. One pass per
    # buffer: a loop writing one array compiles tighter than one writing three.
    t = first_track
    for a in range(first_jet, counts.shape[0], piece):
        b = min(a + piece, counts.shape[0])
        if inputs.size:
            _pad_inputs(columns, n_columns, tables, concat, counts, a, b, t, stale, max_tracks, inputs)
        if valid.size:
            _pad_valid(counts, a, b, stale, max_tracks, valid)
        if label_rows.size:
            _pad_labels(labels, n_labels, label_fill, counts, a, b, t, stale, max_tracks, label_rows)
        for i in range(b - a):
            stale[i] = counts[a + i]
            t += counts[a + i]
        if fd >= 0:
            if mutex:
                _mutex_lock(mutex)
            stored = (_store_piece(fd, inputs, piece, a, b, positions[0])
                      and _store_piece(fd, valid, piece, a, b, positions[1])
                      and _store_piece(fd, label_rows, piece, a, b, positions[2]))
            if mutex:
                _mutex_unlock(mutex)
            if not stored:
                return a
    return -1


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


def valid_slots(counts: np.ndarray, max_tracks: int, out: np.ndarray | None = None) -> np.ndarray:
    """``(n_jets, max_tracks)`` bool, true in each jet's first ``counts`` slots (into ``out`` when given)."""
    out = _output(out, (len(counts), max_tracks), np.dtype(bool))
    pad_track_rows(counts, max_tracks, valid=out)
    return out


def pad_track_rows(counts: np.ndarray, max_tracks: int, stale: np.ndarray | None = None, *,
                   inputs: np.ndarray | None = None, columns: Sequence[np.ndarray] = (),
                   tables: np.ndarray | None = None, concat: np.ndarray | None = None,
                   valid: np.ndarray | None = None, labels: np.ndarray | None = None,
                   label_columns: Sequence[np.ndarray] = (), label_fill: int = -1,
                   fd: int = -1, positions: Sequence[int] = (0, 0, 0), first_jet: int = 0, mutex: int = 0) -> int:
    """Pad the tracks of ``len(counts)`` jets into the train file's track rows in one pass; return -1,
    or the first jet of a piece whose store failed.

    - ``inputs`` ``(rows, max_tracks, len(columns) + n_concat)``: the track ``columns`` (float16)
      mapped through ``tables`` (one table per column over every float16 bit pattern) or, without
      tables, copied (columns of ``inputs``' dtype); then each jet's ``concat`` row
      ``(n_jets, n_concat)`` in every slot that holds a track; zeros in padding;
    - ``valid`` ``(rows, max_tracks)`` bool;
    - ``labels`` ``(rows, max_tracks, len(label_columns))`` of an integer dtype that holds every value
      (see :func:`check_fits`), ``label_fill`` in padding.

    Buffers left out are not written. ``stale[i]`` is how many leading slots of row ``i`` may still
    hold an earlier block's tracks (a reused buffer: slots after it must be padding already and are
    not touched); it is updated to the new counts. Default: every slot is written.

    Without ``fd`` the buffers hold every jet (``rows == len(counts)``). With ``fd`` they hold
    ``rows`` jets at a time: the jets go through them piece by piece, from ``first_jet`` on, and
    each piece is stored into the open file as soon as it is padded, at ``positions`` (the file
    offsets of jet 0's row of inputs, valid and labels), so that it is copied out while still in
    the core's cache, holding the pthread mutex at address ``mutex`` when given (see
    :class:`~tracerflow.write.placed.StoreMutex`). A failed store is not retried: store that piece
    again with ``os.pwrite`` to learn why.
    """
    n_columns, n_labels = len(columns), len(label_columns)
    n_tracks = len(columns[0]) if n_columns else len(label_columns[0]) if n_labels else int(np.sum(counts))
    counts = _checked_counts(counts, n_tracks, max_tracks)
    rows = len(counts) if stale is None else len(stale)
    stale = _stale(stale, rows, max_tracks)
    if fd < 0 and rows != len(counts):
        raise ValueError(f"buffers of {rows} rows for {len(counts)} jets: only a store to a file goes piece by piece")
    if inputs is not None:
        n_concat = 0 if concat is None else concat.shape[1]
        inputs = _output(inputs, (rows, max_tracks, n_columns + n_concat),
                         inputs.dtype if tables is None else tables.dtype)
        if concat is not None and (concat.shape[0] != len(counts) or concat.dtype != inputs.dtype):
            raise ValueError(f"concat is {concat.shape} {concat.dtype}, expected ({len(counts)}, n) {inputs.dtype}")
        if tables is None and any(np.asarray(c).dtype != inputs.dtype for c in columns):
            raise ValueError(f"track columns to copy must be {inputs.dtype}")
    if valid is not None:
        valid = _output(valid, (rows, max_tracks), np.dtype(bool))
    if labels is not None:
        labels = _output(labels, (rows, max_tracks, n_labels), labels.dtype)
    if not len(counts):
        return -1
    items = _as_integers(inputs).dtype if inputs is not None else np.dtype(np.uint16)
    bits = _bit_columns(columns) if tables is not None else tuple(_as_integers(np.asarray(c)) for c in columns)
    label_dtype = labels.dtype if labels is not None else np.dtype(np.int8)
    label_values = np.empty((n_tracks, n_labels), dtype=label_dtype)
    for j, column in enumerate(label_columns):
        label_values[:, j] = np.asarray(column).reshape(-1)
    return _pad_rows(
        _same_layout(bits) if n_columns else (np.zeros(0, items),), n_columns,
        _as_integers(tables) if tables is not None else np.zeros((n_columns, 0), items),
        _as_integers(concat) if concat is not None else np.zeros((len(counts), 0), items),
        label_values.reshape(-1), n_labels, label_dtype.type(label_fill),
        counts, max_tracks, int(first_jet), int(counts[:first_jet].sum()), rows, stale,
        _flat(inputs, items), _flat(valid, np.dtype(np.uint8)), _flat(labels, label_dtype),
        int(fd), np.asarray(positions, dtype=np.int64), int(mutex))


def count_half_patterns(columns: list[np.ndarray]) -> np.ndarray:
    """``(len(columns), 65536)`` counts of each float16 bit pattern in each float16 column."""
    out = np.zeros((len(columns), HALF_PATTERNS), dtype=np.int64)
    if columns:
        _count_patterns(_bit_columns(columns), out)
    return out


def _bit_columns(columns: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Float16 columns as uint16 views, all of one memory layout (the loops take a tuple of one type)."""
    return _same_layout(tuple(np.asarray(c).reshape(-1).view(np.uint16) for c in columns))


def _same_layout(columns: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """``columns`` unchanged when all are contiguous or none is, else contiguous copies."""
    if len({c.flags.c_contiguous for c in columns}) > 1:
        return tuple(np.ascontiguousarray(c) for c in columns)
    return columns


def _flat(buffer: np.ndarray | None, empty: np.dtype) -> np.ndarray:
    """A buffer as a flat integer view for the loops; an empty array of ``empty`` when there is none."""
    return _as_integers(buffer).reshape(-1) if buffer is not None else np.zeros(0, empty)


def _checked_counts(counts: np.ndarray, n_tracks: int, max_tracks: int) -> np.ndarray:
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > max_tracks):
        raise ValueError(f"track counts must lie in [0, {max_tracks}], got [{counts.min()}, {counts.max()}]")
    if int(counts.sum()) != n_tracks:
        raise ValueError(f"track counts add up to {int(counts.sum())}, but {n_tracks} tracks were given")
    return counts


def _stale(stale: np.ndarray | None, rows: int, max_tracks: int) -> np.ndarray:
    """Per buffer row, the slots a loop must clear up to: every slot unless ``stale`` says fewer may
    be dirty. A given ``stale`` is used in place (the loops update it), so it must be int64."""
    if stale is None:
        return np.full(rows, max_tracks, dtype=np.int64)
    if stale.dtype != np.int64 or not stale.flags.c_contiguous or (
            stale.size and (stale.min() < 0 or stale.max() > max_tracks)):
        raise ValueError(f"stale must be contiguous int64 counts in [0, {max_tracks}]")
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
