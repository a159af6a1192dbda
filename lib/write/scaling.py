"""The scale dict: per-variable shift and scale, accumulated over a stream and applied to chunks.

Layout (umami/UPP style): ``{"jets": {var: {"shift": m, "scale": s, "log": bool, "asinh": bool}}, "tracks": {...}}``.
A scaled value is ``(t(x) - shift) / scale`` with ``t`` the identity, ``log`` for a ``log``
variable or ``asinh`` for an ``asinh`` one. ``asinh`` is linear near 0 and logarithmic in both
tails: signed, heavy-tailed inputs such as impact-parameter significances keep their core
resolved instead of being squeezed by a standard deviation the tails inflate. Entries without
``asinh`` (scale dicts from other tools) read as ``false``.

Missing values: NaN and +-inf entries are left out of the mean and std, and become 0 after
scaling (the mean, for a normalised variable). For a ``log`` variable, ``x <= 0`` has no
logarithm and is treated as NaN in both places. Track variables count only real tracks;
padding slots are 0 after scaling. A ``no_norm`` variable gets shift 0 and scale 1 (still
transformed if it is also ``log`` or ``asinh``); a variable whose std is 0, or that has no finite value, gets scale 1.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from tracerflow.io.atomic import write_atomic
from tracerflow.write.appender import read_text
from tracerflow.write.chunk import TrainChunk

GROUPS = ("jets", "tracks")
#: Bytes of float32 values the arithmetic scales per block of rows: blocks stay in a core's cache,
#: and are large enough that the per-call cost of numpy's operations does not dominate.
_BLOCK_BYTES = 1 << 20

VariableSet = Iterable[str] | Mapping[str, Iterable[str]]


def _names_for(spec: VariableSet, group: str) -> frozenset[str]:
    """Names of ``spec`` that apply to ``group``: a plain list applies to every group."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(GROUPS)
        if unknown:
            raise ValueError(f"variable groups must be among {GROUPS}, got {sorted(unknown)}")
        return frozenset(spec.get(group, ()))
    return frozenset(spec)


def _log_or_nan(x: np.ndarray) -> np.ndarray:
    """``log(x)`` where ``x > 0``, NaN elsewhere (including NaN inputs)."""
    positive = x > 0
    out = np.full(x.shape, np.nan, dtype=x.dtype)
    np.log(x, out=out, where=positive)
    return out


def _transformed(x: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    """``x`` through the entry's transform (``log``, ``asinh`` or none) before shift and scale."""
    if entry.get("log", False):
        return _log_or_nan(x)
    if entry.get("asinh", False):
        return np.arcsinh(x)
    return x


def _moments(values: np.ndarray, counts: np.ndarray | None = None) -> tuple[float, float, float]:
    """(n, mean, sum of squared deviations) of the finite ``values`` in float64, each counted
    ``counts`` times when given. Sums, not ``np.dot``: a BLAS dot product leaves its threads
    spinning for a while afterwards, on the cores the writer's threads need next."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if counts is None:
        x = x if finite.all() else x[finite]
        n = float(len(x))
        if not n:
            return 0.0, 0.0, 0.0
        mean = float(np.sum(x)) / n
        return n, mean, float(np.sum(np.square(x - mean)))
    x, weights = x[finite], np.asarray(counts, dtype=np.float64)[finite]
    n = float(weights.sum())
    if not n:
        return 0.0, 0.0, 0.0
    mean = float(np.sum(weights * x)) / n
    return n, mean, float(np.sum(weights * np.square(x - mean)))


#: Every float16 value, in the order of its bit pattern: float16 inputs are scaled and counted
#: through tables over these 65,536 values instead of value by value.
HALF_VALUES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)


class ScaleAccumulator:
    """Streaming, NaN-aware mean and std per jet and track variable (Chan's parallel merge).

    Each chunk's moments are computed in float64 around the chunk's own mean and merged, so
    the result stays accurate for large samples and does not depend on the chunking beyond
    float rounding; :meth:`merge` combines accumulators filled by separate workers. Float16
    inputs (graph node features) are counted per bit pattern instead, and their moments taken
    over the 65,536 possible values at the end: exact, and independent of the chunking.
    """

    def __init__(
        self,
        jet_vars: Sequence[str],
        track_vars: Sequence[str],
        *,
        log: VariableSet = (),
        no_norm: VariableSet = (),
        asinh: VariableSet = (),
    ) -> None:
        self.variables = {"jets": tuple(jet_vars), "tracks": tuple(track_vars)}
        self.log = {g: _names_for(log, g) & set(self.variables[g]) for g in GROUPS}
        self.asinh = {g: _names_for(asinh, g) & set(self.variables[g]) for g in GROUPS}
        self.no_norm = {g: _names_for(no_norm, g) & set(self.variables[g]) for g in GROUPS}
        for spec, what in ((log, "log"), (asinh, "asinh"), (no_norm, "no_norm")):
            listed = set().union(*(_names_for(spec, g) for g in GROUPS))
            known = set().union(*(self.variables[g] for g in GROUPS))
            if listed - known:
                raise ValueError(f"{what} names variables that are not inputs: {sorted(listed - known)}")
        both = {g: self.log[g] & self.asinh[g] for g in GROUPS}
        if any(both.values()):
            raise ValueError(f"variables both log and asinh: {sorted(set().union(*both.values()))}")
        self._moments = {g: {v: np.zeros(3) for v in self.variables[g]} for g in GROUPS}
        self._half_counts: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}

    def update(self, chunk: TrainChunk) -> None:
        """Add a chunk's jets and its tracks (real tracks only: chunks carry no padding)."""
        self.update_columns(chunk.jets, chunk.tracks)

    def update_columns(self, jets: Mapping[str, np.ndarray], tracks: Mapping[str, np.ndarray]) -> None:
        """Add jet variables ``(n,)`` and track variables (one value per real track); a group's
        mapping may leave variables out (counted elsewhere, as with :meth:`add_half_counts`)."""
        for group, columns in (("jets", jets), ("tracks", tracks)):
            wanted = {v: np.asarray(columns[v]).reshape(-1) for v in self.variables[group]
                      if v in columns and v not in self.no_norm[group]}
            half = [v for v, values in wanted.items() if values.dtype == np.float16]
            from tracerflow.write.kernels import count_half_patterns  # numba: loaded when scaling, not by imports

            for var, counts in zip(half, count_half_patterns([wanted[v] for v in half])):
                self.add_half_counts(group, var, counts)
            for var, values in wanted.items():
                if var not in half:
                    n, mean, m2 = _moments(_transformed(values.astype(np.float64), self._flags(group, var)))
                    if n:
                        self._merge_moments(group, var, n, mean, m2)

    def add_half_counts(self, group: str, var: str, counts: np.ndarray) -> None:
        """Add float16 values of ``var`` given as counts of each of the 65,536 bit patterns."""
        if var in self.no_norm[group]:
            return
        if var not in self.variables[group]:
            raise KeyError(f"{var!r} is not a {group} variable of this accumulator")
        held = self._half_counts[group]
        held[var] = held[var] + counts if var in held else np.array(counts, dtype=np.int64)

    def _flags(self, group: str, var: str) -> dict[str, bool]:
        return {"log": var in self.log[group], "asinh": var in self.asinh[group]}

    def _merge_moments(self, group: str, var: str, n_b: float, mean_b: float, m2_b: float) -> None:
        self._moments[group][var][:] = _merged(tuple(self._moments[group][var]), (n_b, mean_b, m2_b))

    def merge(self, other: "ScaleAccumulator") -> None:
        """Fold in an accumulator over the same variables that saw other chunks."""
        if (other.variables, other.log, other.asinh, other.no_norm) != (self.variables, self.log, self.asinh,
                                                                        self.no_norm):
            raise ValueError("cannot merge accumulators over different variables or groups")
        for group in GROUPS:
            for var, (n_b, mean_b, m2_b) in other._moments[group].items():
                if n_b:
                    self._merge_moments(group, var, n_b, mean_b, m2_b)
            held = self._half_counts[group]
            for var, counts in other._half_counts[group].items():
                held[var] = held[var] + counts if var in held else counts.copy()

    def _total(self, group: str, var: str) -> tuple[float, float, float]:
        """(n, mean, m2) of ``var`` over everything seen: merged moments and float16 counts."""
        total = tuple(self._moments[group][var])
        counts = self._half_counts[group].get(var)
        if counts is not None:
            seen = counts > 0
            values = _transformed(HALF_VALUES[seen].astype(np.float64), self._flags(group, var))
            total = _merged(total, _moments(values, counts[seen]))
        return total

    def counts(self) -> dict[str, dict[str, int]]:
        """How many finite values each variable's mean and std were computed from."""
        return {g: {v: int(self._total(g, v)[0]) for v in self.variables[g]} for g in GROUPS}

    def result(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The scale dict of everything seen so far."""
        return {group: self.group_result(group) for group in GROUPS}

    def group_result(self, group: str) -> dict[str, dict[str, Any]]:
        """The entries of one group (``jets`` or ``tracks``) of :meth:`result`. The groups' state is
        separate, so one thread may fill and finish one group while another thread does the other."""
        out = {}
        for var in self.variables[group]:
            n, mean, m2 = self._total(group, var)
            shift, scale = 0.0, 1.0
            if var not in self.no_norm[group] and n > 0:
                std = float(np.sqrt(m2 / n))
                shift = float(mean)
                scale = std if np.isfinite(std) and std > 0 else 1.0
            out[var] = {"shift": shift, "scale": scale, **self._flags(group, var)}
        return out


def _merged(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    """Chan's merge of two (n, mean, m2) triples."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if not n:
        return 0.0, 0.0, 0.0
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta * delta * (n_a * n_b / n)


def scale_entry(scale_dict: Mapping[str, Any], group: str, var: str) -> Mapping[str, Any]:
    """The ``{"shift", "scale", "log", "asinh"}`` entry of ``group/var``, or a ``KeyError`` naming it."""
    try:
        return scale_dict[group][var]
    except KeyError:
        raise KeyError(f"scale dict has no entry for {group} variable {var!r}") from None


def _scale_stack(
    columns: Sequence[np.ndarray],
    entries: Sequence[Mapping[str, Any]],
    n: int,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Scaled columns of ``n`` values stacked as ``(n, len(columns))``, computed in float32 and stored as
    ``dtype``.

    A float16 column is looked up in its variable's table over every float16 value (computed
    once, by the float32 arithmetic below), which gives the same numbers at a fraction of the cost.
    """
    out = np.empty((n, len(columns)), dtype=dtype)
    if not columns or not out.size:
        return out
    other = []
    for j, (col, entry) in enumerate(zip(columns, entries)):
        col = np.asarray(col).reshape(-1)
        if col.dtype == np.float16:
            out[:, j] = _half_table(_table_key(entry), np.dtype(dtype).str)[col.view(np.uint16)]
        else:
            other.append(j)
    if other:
        out[:, other] = _scale_arithmetic([columns[j] for j in other], [entries[j] for j in other], n, dtype)
    return out


def _table_key(entry: Mapping[str, Any]) -> tuple[float, float, bool, bool]:
    return float(entry["shift"]), float(entry["scale"]), bool(entry.get("log", False)), bool(entry.get("asinh", False))


@lru_cache(maxsize=256)
def _half_table(key: tuple[float, float, bool, bool], dtype: str) -> np.ndarray:
    """The scaled value, as ``dtype``, of every float16 value (indexed by bit pattern) for one entry."""
    shift, scale, log, asinh = key
    entry = {"shift": shift, "scale": scale, "log": log, "asinh": asinh}
    table = _scale_arithmetic([HALF_VALUES], [entry], len(HALF_VALUES), np.dtype(dtype))[:, 0]
    table.flags.writeable = False
    return table


@lru_cache(maxsize=64)
def _half_tables(keys: tuple[tuple[float, float, bool, bool], ...], dtype: str) -> np.ndarray:
    """The tables of :func:`_half_table` for several entries, stacked as ``(len(keys), 65536)``."""
    tables = np.stack([_half_table(key, dtype) for key in keys])
    tables.flags.writeable = False
    return tables


#: Items torch copies on the calling thread alone: above this it starts its OpenMP threads,
#: which then spin-wait on the cores the writer's workers need (torch's ``GRAIN_SIZE``).
_TORCH_SERIAL_ITEMS = 32768


def _cast_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for equal shapes; through torch when either side is float16, whose
    vectorised casts run 3-6x faster than numpy's and round the same way (to nearest, ties to
    even), in pieces small enough that torch stays on this thread."""
    if np.float16 not in (dst.dtype, src.dtype):
        dst[...] = src
        return
    import torch  # imported here: reading a scale dict needs no torch

    rows = max(1, _TORCH_SERIAL_ITEMS // max(1, int(np.prod(dst.shape[1:], dtype=np.int64))))
    for start in range(0, len(dst), rows):
        torch.from_numpy(dst[start:start + rows]).copy_(torch.from_numpy(src[start:start + rows]))


def _scale_arithmetic(columns: Sequence[np.ndarray], entries: Sequence[Mapping[str, Any]], n: int,
                      dtype: Any) -> np.ndarray:
    """``(transform(x) - shift) / scale`` per column in float32, non-finite results 0, as ``(n, columns)``
    of ``dtype``; blocks of rows stay in cache and are interleaved with one transposing copy each."""
    out = np.empty((n, len(columns)), dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        step = max(1, _BLOCK_BYTES // (4 * len(columns)))
        for start in range(0, n, step):
            stop = min(start + step, n)
            block = np.empty((len(columns), stop - start), dtype=np.float32)
            for i, (col, entry) in enumerate(zip(columns, entries)):
                x = block[i]
                _cast_into(x, np.ascontiguousarray(np.asarray(col).reshape(-1)[start:stop]))
                if entry.get("log", False) or entry.get("asinh", False):
                    x[...] = _transformed(x, entry)
                x -= np.float32(entry["shift"])
                x /= np.float32(float(entry["scale"]) or 1.0)
                np.copyto(x, np.float32(0), where=~np.isfinite(x))
            _cast_into(out[start:stop], block.T)
    return out


@dataclass(frozen=True)
class ScaledInputs:
    """Scaled inputs of one chunk, columns in the order of ``jet_vars`` and ``track_vars``."""

    jets: np.ndarray
    tracks: np.ndarray
    jet_vars: tuple[str, ...]
    track_vars: tuple[str, ...]


def apply_scaling(
    chunk: TrainChunk,
    scale_dict: Mapping[str, Any],
    jet_vars: Sequence[str] | None = None,
    track_vars: Sequence[str] | None = None,
    dtype: Any = np.float32,
) -> ScaledInputs:
    """Scale a chunk's inputs into ``(n, n_jet_vars)`` and ``(n, max_tracks, n_track_vars)`` arrays of ``dtype``.

    Tracks are scaled compactly and then padded: padding slots are 0.

    The arithmetic is float32 whatever ``dtype`` the results are stored in (float16 for a
    half-precision train file gives the same values as casting the float32 results).
    Without explicit lists, every chunk variable that the scale dict has is used, in the chunk's order.
    """
    if jet_vars is None:
        jet_vars = [v for v in chunk.jets if v in scale_dict.get("jets", {})]
    if track_vars is None:
        track_vars = [v for v in chunk.tracks if v in scale_dict.get("tracks", {})]
    jets = scale_jets(chunk, scale_dict, jet_vars, dtype)
    columns, tables = track_columns_to_pad(chunk, scale_dict, track_vars, dtype)
    from tracerflow.write.kernels import pad_track_rows

    tracks = np.empty((len(chunk), chunk.max_tracks, len(track_vars)), dtype=dtype)
    pad_track_rows(chunk.counts, chunk.max_tracks, inputs=tracks, columns=columns, tables=tables)
    return ScaledInputs(jets, tracks, tuple(jet_vars), tuple(track_vars))


def scale_jets(chunk: TrainChunk, scale_dict: Mapping[str, Any], jet_vars: Sequence[str], dtype: Any) -> np.ndarray:
    """A chunk's jet variables ``jet_vars`` scaled, as ``(n, len(jet_vars))`` of ``dtype``."""
    entries = [scale_entry(scale_dict, "jets", v) for v in jet_vars]
    return _scale_stack([_column(chunk.jets, "jets", v) for v in jet_vars], entries, len(chunk), dtype)


def track_columns_to_pad(chunk: TrainChunk, scale_dict: Mapping[str, Any], track_vars: Sequence[str],
                         dtype: Any) -> tuple[list[np.ndarray], np.ndarray | None]:
    """A chunk's compact track columns ``track_vars`` as :func:`~tracerflow.write.kernels.pad_track_rows`
    scales them while padding: float16 columns as they are, with each one's table of scaled values
    (``(n_columns, 65536)`` of ``dtype``); other columns scaled now, as ``dtype``, with no tables."""
    entries = [scale_entry(scale_dict, "tracks", v) for v in track_vars]
    columns = [np.asarray(_column(chunk.tracks, "tracks", v)) for v in track_vars]
    if columns and all(c.dtype == np.float16 for c in columns):
        return columns, _half_tables(tuple(_table_key(e) for e in entries), np.dtype(dtype).str)
    scaled = _scale_stack(columns, entries, int(np.sum(chunk.counts)), dtype)
    return [scaled[:, j] for j in range(len(columns))], None


def _column(columns: Mapping[str, np.ndarray], group: str, var: str) -> np.ndarray:
    try:
        return columns[var]
    except KeyError:
        raise KeyError(f"chunk has no {group} variable {var!r}") from None


def _plain(obj: Any) -> Any:
    """Numpy scalars to Python ones, so JSON sees floats, ints and bools only."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def scale_dict_to_json(scale_dict: Mapping[str, Any]) -> str:
    """Canonical JSON text: sorted keys, shortest round-trip floats, no NaN, a final newline."""
    return json.dumps(_plain(scale_dict), sort_keys=True, indent=2, allow_nan=False) + "\n"


def scale_dict_from_json(text: str | bytes) -> dict[str, Any]:
    """Parse a scale dict and check that every entry has a shift, a scale and a log flag."""
    scale_dict = json.loads(text)
    for group, entries in scale_dict.items():
        for var, entry in entries.items():
            missing = {"shift", "scale", "log"} - set(entry)
            if missing:
                raise ValueError(f"scale dict entry {group}/{var} lacks {sorted(missing)}")
    return scale_dict


def write_scale_dict(path: str | os.PathLike, scale_dict: Mapping[str, Any]) -> Path:
    """Write the scale dict as canonical JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    write_atomic(path, scale_dict_to_json(scale_dict))
    return path


def read_scale_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a scale dict written by :func:`write_scale_dict` (or any file of the same layout)."""
    return scale_dict_from_json(Path(path).read_text(encoding="utf-8"))


def read_embedded_scale_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The scale dict stored inside a umami train file (``/scale_dict``) or fold file (``/meta_data/scale_dict``)."""
    with h5py.File(path, "r") as f:
        for name in ("scale_dict", "meta_data/scale_dict"):
            if name in f:
                return scale_dict_from_json(read_text(f, name))
    raise KeyError(f"{path}: holds no scale dict (neither /scale_dict nor /meta_data/scale_dict)")
