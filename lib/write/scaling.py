"""The scale dict: per-variable shift and scale, accumulated over a stream and applied to chunks.

Layout (umami/UPP style): ``{"jets": {var: {"shift": m, "scale": s, "log": bool, "asinh": bool}}, "tracks": {...}}``.
A scaled value is ``(t(x) - shift) / scale`` with ``t`` the identity, ``log`` for a ``log``
variable or ``asinh`` for an ``asinh`` one. ``asinh`` is linear near 0 and logarithmic in both
tails: signed, heavy-tailed inputs such as impact-parameter significances keep their core
resolved instead of being squeezed by a standard deviation the tails inflate. Entries without
``asinh`` (scale dicts from other tools) read as ``false``.

Missing values: NaN and +-inf entries are left out of the mean and std, and become 0 after
scaling (the mean, for a normalised variable). For a ``log`` variable, ``x <= 0`` has no
logarithm and is treated as NaN in both places. Track variables count only where ``valid``;
padding slots are 0 after scaling. A ``no_norm`` variable gets shift 0 and scale 1 (still
transformed if it is also ``log`` or ``asinh``); a variable whose std is 0, or that has no finite value, gets scale 1.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import h5py
import numpy as np
import torch

from tracerflow.write.appender import read_text
from tracerflow.write.chunk import TrainChunk

GROUPS = ("jets", "tracks")
_BLOCK_ROWS = 4096
_THREADS = min(4, os.cpu_count() or 1)

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


class ScaleAccumulator:
    """Streaming, NaN-aware mean and std per jet and track variable (Chan's parallel merge).

    Each chunk's moments are computed in float64 around the chunk's own mean and merged, so
    the result stays accurate for large samples and does not depend on the chunking beyond
    float rounding; :meth:`merge` combines accumulators filled by separate workers.
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

    def update(self, chunk: TrainChunk) -> None:
        """Add a chunk's jets, and its tracks where ``valid``."""
        for var in self.variables["jets"]:
            self._add("jets", var, np.asarray(chunk.jets[var]).ravel())
        valid = np.asarray(chunk.valid, dtype=bool)
        for var in self.variables["tracks"]:
            self._add("tracks", var, np.asarray(chunk.tracks[var])[valid])

    def _add(self, group: str, var: str, values: np.ndarray) -> None:
        if var in self.no_norm[group]:
            return
        x = _transformed(values.astype(np.float64), self._flags(group, var))
        x = x[np.isfinite(x)]
        if x.size:
            mean = float(x.mean())
            m2 = float(np.square(x - mean).sum())
            self._merge_moments(group, var, float(x.size), mean, m2)

    def _flags(self, group: str, var: str) -> dict[str, bool]:
        return {"log": var in self.log[group], "asinh": var in self.asinh[group]}

    def _merge_moments(self, group: str, var: str, n_b: float, mean_b: float, m2_b: float) -> None:
        m = self._moments[group][var]
        n_a, mean_a, m2_a = m
        n = n_a + n_b
        delta = mean_b - mean_a
        m[0] = n
        m[1] = mean_a + delta * (n_b / n)
        m[2] = m2_a + m2_b + delta * delta * (n_a * n_b / n)

    def merge(self, other: "ScaleAccumulator") -> None:
        """Fold in an accumulator over the same variables that saw other chunks."""
        if (other.variables, other.log, other.asinh, other.no_norm) != (self.variables, self.log, self.asinh,
                                                                        self.no_norm):
            raise ValueError("cannot merge accumulators over different variables or groups")
        for group in GROUPS:
            for var, (n_b, mean_b, m2_b) in other._moments[group].items():
                if n_b:
                    self._merge_moments(group, var, n_b, mean_b, m2_b)

    def counts(self) -> dict[str, dict[str, int]]:
        """How many finite values each variable's mean and std were computed from."""
        return {g: {v: int(m[0]) for v, m in self._moments[g].items()} for g in GROUPS}

    def result(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The scale dict of everything seen so far."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for group in GROUPS:
            out[group] = {}
            for var in self.variables[group]:
                n, mean, m2 = self._moments[group][var]
                shift, scale = 0.0, 1.0
                if var not in self.no_norm[group] and n > 0:
                    std = float(np.sqrt(m2 / n))
                    shift = float(mean)
                    scale = std if np.isfinite(std) and std > 0 else 1.0
                out[group][var] = {"shift": shift, "scale": scale, **self._flags(group, var)}
        return out


def scale_entry(scale_dict: Mapping[str, Any], group: str, var: str) -> Mapping[str, Any]:
    """The ``{"shift", "scale", "log", "asinh"}`` entry of ``group/var``, or a ``KeyError`` naming it."""
    try:
        return scale_dict[group][var]
    except KeyError:
        raise KeyError(f"scale dict has no entry for {group} variable {var!r}") from None


def scale_values(values: np.ndarray, entry: Mapping[str, Any], valid: np.ndarray | None = None) -> np.ndarray:
    """Scale one variable in float32; non-finite results, and slots outside ``valid``, become 0."""
    values = np.asarray(values)
    return _scale_stack([values], [entry], values.shape, valid)[..., 0]


def _scale_stack(
    columns: Sequence[np.ndarray],
    entries: Sequence[Mapping[str, Any]],
    lead: tuple[int, ...],
    valid: np.ndarray | None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Scaled columns stacked on a last axis, computed in float32 and stored as ``dtype``.

    The arithmetic runs per variable on contiguous blocks of rows that stay in cache; each
    block is then interleaved into the output with one transposing copy. Blocks are shared out
    to a few threads (numpy and torch release the GIL here).
    """
    out = np.empty(tuple(lead) + (len(columns),), dtype=dtype)
    if not columns or not out.size:
        return out
    valid = None if valid is None else np.asarray(valid, dtype=bool)
    starts = list(range(0, lead[0], _BLOCK_ROWS))
    if len(starts) < 2 * _THREADS:
        _scale_blocks(columns, entries, lead, valid, out, starts)
        return out
    with _single_threaded_torch(), ThreadPoolExecutor(_THREADS) as pool:
        parts = [starts[i::_THREADS] for i in range(_THREADS)]
        for done in [pool.submit(_scale_blocks, columns, entries, lead, valid, out, part) for part in parts]:
            done.result()
    return out


@contextmanager
def _single_threaded_torch() -> Iterator[None]:
    """Run torch ops on the calling thread only: the blocks are already spread over threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cast_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src``; through torch when either side is float16, whose vectorised casts run
    3-6x faster than numpy's and round the same way (to nearest, ties to even)."""
    if np.float16 in (dst.dtype, src.dtype):
        torch.from_numpy(dst).copy_(torch.from_numpy(src))
    else:
        dst[...] = src


def _scale_blocks(columns: Sequence[np.ndarray], entries: Sequence[Mapping[str, Any]], lead: tuple[int, ...],
                  valid: np.ndarray | None, out: np.ndarray, starts: Sequence[int]) -> None:
    """Scale the row blocks beginning at ``starts`` into ``out``."""
    with np.errstate(over="ignore", invalid="ignore"):
        for start in starts:
            stop = min(start + _BLOCK_ROWS, lead[0])
            outside = None if valid is None else ~valid[start:stop]
            block = np.empty((len(columns), stop - start) + tuple(lead[1:]), dtype=np.float32)
            for i, (col, entry) in enumerate(zip(columns, entries)):
                x = block[i]
                _cast_into(x, np.ascontiguousarray(col[start:stop]))
                if entry.get("log", False) or entry.get("asinh", False):
                    x[...] = _transformed(x, entry)
                x -= np.float32(entry["shift"])
                x /= np.float32(float(entry["scale"]) or 1.0)
                bad = ~np.isfinite(x)
                if outside is not None:
                    bad |= outside
                np.copyto(x, np.float32(0), where=bad)
            _cast_into(out[start:stop], np.moveaxis(block, 0, -1))


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
    """Scale a chunk's inputs into ``(n, n_jet_vars)`` and ``(n, max_tracks, n_track_vars)`` arrays.

    The arithmetic is float32 whatever ``dtype`` the results are stored in (float16 for a
    half-precision train file gives the same values as casting the float32 results).
    Without explicit lists, every chunk variable that the scale dict has is used, in the chunk's order.
    """
    if jet_vars is None:
        jet_vars = [v for v in chunk.jets if v in scale_dict.get("jets", {})]
    if track_vars is None:
        track_vars = [v for v in chunk.tracks if v in scale_dict.get("tracks", {})]
    jet_entries = [scale_entry(scale_dict, "jets", v) for v in jet_vars]
    track_entries = [scale_entry(scale_dict, "tracks", v) for v in track_vars]
    jets = _scale_stack([_column(chunk.jets, "jets", v) for v in jet_vars], jet_entries, (len(chunk),), None, dtype)
    tracks = _scale_stack(
        [_column(chunk.tracks, "tracks", v) for v in track_vars], track_entries, chunk.valid.shape, chunk.valid, dtype
    )
    return ScaledInputs(jets, tracks, tuple(jet_vars), tuple(track_vars))


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(scale_dict_to_json(scale_dict), encoding="utf-8")
    os.replace(tmp, path)
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
