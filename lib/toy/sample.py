"""Writing of toy ROOT files (planned by :mod:`.plan`): one TTree ``events``, one entry per event.

Every file depends only on (seed, sample, file index): jet multiplicities come from one
per-sample stream that any file can replay, and the rest from generators keyed by the file
index and a fixed block of events inside the file, so files can be produced in any order or
in parallel, and a file re-generated alone is byte-identical to the one from a full run.

Opt-in (``pixel_hits``, a pixel geometry name): each event also gets the signal hits its tracks
leave in that pixel detector (:mod:`.pixel_hits`), as jagged branches ``hit_sensor``,
``hit_ucell``, ``hit_vcell`` (int16), ``hit_charge`` (uint8), ``hit_is_background`` (int8, 0:
signal; BuildEvents overlays the background later) with counter ``n_hits``. They come from their
own generator per block, so without them a file is byte for byte what it was before they existed.
"""
from __future__ import annotations

import datetime
import os
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from ..io.atomic import temporary_path
from ..seeding import derive_seed, rng_for
from .detector import draw_tracks
from .likelihood import jet_log_likelihood_ratios
from .pixel_hits import signal_hits, wrap_phi
from .pixels import PixelGeometry, geometry as pixel_geometry
from .plan import FilePlan, file_multiplicities, plan_files
from .processes import FLAVOURS, Process, draw_jets, draw_weights, get_process

TREE_NAME = "events"
EVENTS_PER_BLOCK = 10_000
DEFAULT_CHUNK_EVENTS = 50_000
COUNTER_NAMES = {"jet": "n_jets", "trk": "n_tracks", "hit": "n_hits"}
FIXED_TIMESTAMP = datetime.datetime(2000, 1, 1)


def _generate_block(
    proc: Process, rng: np.random.Generator, multiplicity: np.ndarray, first_event: int
) -> dict[str, np.ndarray]:
    """Generate the events of one block as flat arrays (events, jets, tracks) plus counts."""
    n_events = len(multiplicity)
    n_jets = int(multiplicity.sum())
    weight = draw_weights(proc, rng, n_events)
    jets = draw_jets(proc, rng, n_jets)
    jet_pt = jets["pt"].astype(np.float32)
    n_tracks, tracks = draw_tracks(rng, jets["flavour"], jet_pt.astype(np.float64))
    llr_bl, llr_cl = jet_log_likelihood_ratios(
        jet_pt, n_tracks, tracks["pt"], tracks["deta"], tracks["dphi"], tracks["d0"], tracks["z0"]
    )
    event_of_jet = np.repeat(np.arange(n_events), multiplicity)
    jet_offsets = np.concatenate([[0], np.cumsum(multiplicity)[:-1]])
    jet_in_event = np.arange(n_jets) - jet_offsets[event_of_jet]
    return {
        "run": np.full(n_events, proc.run, dtype=np.int32),
        "event_number": np.arange(first_event, first_event + n_events, dtype=np.int64),
        "weight": weight,
        "n_jets": multiplicity.astype(np.int64),
        "n_tracks": np.bincount(event_of_jet, weights=n_tracks, minlength=n_events).astype(np.int64),
        "jet_pt": jet_pt,
        "jet_eta": jets["eta"].astype(np.float32),
        "jet_phi": jets["phi"].astype(np.float32),
        "jet_mass": jets["mass"].astype(np.float32),
        "jet_flavour": np.asarray(FLAVOURS, dtype=np.int32)[jets["flavour"]],
        "jet_ntracks": n_tracks.astype(np.int32),
        "jet_llr_bl": llr_bl.astype(np.float32),
        "jet_llr_cl": llr_cl.astype(np.float32),
        "trk_pt": tracks["pt"],
        "trk_deta": tracks["deta"],
        "trk_dphi": tracks["dphi"],
        "trk_d0": tracks["d0"],
        "trk_z0": tracks["z0"],
        "trk_sigma_d0": tracks["sigma_d0"],
        "trk_sigma_z0": tracks["sigma_z0"],
        "trk_charge": tracks["charge"],
        "trk_origin": tracks["origin"],
        "trk_jet_index": jet_in_event[tracks["jet"]].astype(np.int32),
    }


def _block_hits(
    geometry: PixelGeometry, rng: np.random.Generator, block: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The signal hits of one block's tracks as flat ``hit_*`` arrays plus the ``n_hits`` counts.

    Track directions are taken from the float32 values written (eta = jet_eta + trk_deta, phi =
    jet_phi + trk_dphi wrapped), so a reader can recompute them from the file.
    """
    n_events = len(block["n_jets"])
    jet_event = np.repeat(np.arange(n_events), block["n_jets"])
    track_jet = np.repeat(np.arange(len(jet_event)), block["jet_ntracks"])
    eta = block["jet_eta"].astype(np.float64)[track_jet] + block["trk_deta"].astype(np.float64)
    phi = wrap_phi(block["jet_phi"].astype(np.float64)[track_jet] + block["trk_dphi"].astype(np.float64))
    digits = signal_hits(geometry, rng, eta, phi, block["trk_pt"], block["trk_charge"], jet_event[track_jet], n_events)
    return {
        "n_hits": np.bincount(digits["event"], minlength=n_events).astype(np.int64),
        "hit_sensor": digits["sensor"],
        "hit_ucell": digits["ucell"],
        "hit_vcell": digits["vcell"],
        "hit_charge": digits["charge"],
        "hit_is_background": np.zeros(len(digits["charge"]), dtype=np.int8),
    }


def _tree_arrays(blocks: list[dict[str, np.ndarray]]) -> dict[str, object]:
    """Concatenate blocks and shape them into the branch dict uproot writes (jagged records)."""
    flat = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    jagged = {}
    for prefix in ("jet", "trk", "hit"):
        if COUNTER_NAMES[prefix] not in flat:
            continue
        fields = {k[len(prefix) + 1 :]: flat[k] for k in flat if k.startswith(prefix + "_")}
        jagged[prefix] = ak.unflatten(ak.zip(fields), flat[COUNTER_NAMES[prefix]])
    return {
        "run": flat["run"],
        "event_number": flat["event_number"],
        "weight": flat["weight"],
        **jagged,
    }


class _FixedDatetime(datetime.datetime):
    """A datetime class whose clock always reads :data:`FIXED_TIMESTAMP`."""

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:
        """Return the fixed timestamp."""
        return FIXED_TIMESTAMP


_FIXED_DATETIME_MODULE = types.SimpleNamespace(datetime=_FixedDatetime)
_UPROOT_CLOCK_MODULES = ("_cascade", "writable", "_cascadetree")
_CLOCK_LOCK = threading.Lock()
_CLOCK_USERS = 0
_CLOCK_SAVED: dict[str, object] = {}


@contextmanager
def _frozen_uproot_clock() -> Iterator[None]:
    """Make uproot stamp ROOT keys and directories with a fixed time, so output is byte-reproducible.

    uproot takes its TDatime stamps from ``datetime.datetime.now()``; while any writer is inside
    this context, its writing modules see a clock frozen at :data:`FIXED_TIMESTAMP`.
    """
    global _CLOCK_USERS
    modules = [
        module
        for module in (getattr(uproot.writing, name, None) for name in _UPROOT_CLOCK_MODULES)
        if module is not None and hasattr(module, "datetime")
    ]
    with _CLOCK_LOCK:
        if _CLOCK_USERS == 0:
            for module in modules:
                _CLOCK_SAVED[module.__name__] = module.datetime
                module.datetime = _FIXED_DATETIME_MODULE
        _CLOCK_USERS += 1
    try:
        yield
    finally:
        with _CLOCK_LOCK:
            _CLOCK_USERS -= 1
            if _CLOCK_USERS == 0:
                for module in modules:
                    module.datetime = _CLOCK_SAVED.pop(module.__name__)


def _file_uuid(seed: int, sample: str, index: int) -> uuid.UUID:
    """Deterministic 128-bit UUID of one file."""
    high = derive_seed(seed, "toy", sample, "file", index, "uuid", 0)
    low = derive_seed(seed, "toy", sample, "file", index, "uuid", 1)
    return uuid.UUID(int=(high << 64) | low)


def _file_chunks(
    proc: Process, plan_entry: FilePlan, seed: int, sample: str, multiplicity: np.ndarray, chunk_events: int,
    pixel_hits: PixelGeometry | None = None,
) -> Iterator[dict[str, object]]:
    """Yield the file's events as branch dicts of whole blocks, about ``chunk_events`` events each;
    with ``pixel_hits``, each block's signal hits from their own generator."""
    starts = list(range(0, plan_entry.n_events, EVENTS_PER_BLOCK))
    blocks_per_chunk = -(-chunk_events // EVENTS_PER_BLOCK)
    for first_block in range(0, len(starts), blocks_per_chunk):
        blocks = []
        for block in range(first_block, min(first_block + blocks_per_chunk, len(starts))):
            rng = rng_for(seed, "toy", sample, "file", plan_entry.index, "block", block)
            start, stop = starts[block], min(starts[block] + EVENTS_PER_BLOCK, plan_entry.n_events)
            arrays = _generate_block(proc, rng, multiplicity[start:stop], plan_entry.first_event + start)
            if pixel_hits is not None:
                hit_rng = rng_for(seed, "toy", sample, "file", plan_entry.index, "block", block, "pixel_hits")
                arrays.update(_block_hits(pixel_hits, hit_rng, arrays))
            blocks.append(arrays)
        yield _tree_arrays(blocks)


def generate_file(
    process: str,
    plan_entry: FilePlan,
    seed: int,
    sample: str,
    out_dir: str | Path,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    pixel_hits: str | None = None,
) -> Path:
    """Generate one planned file into ``out_dir`` atomically and return its path.

    It is written under its final name inside a temporary directory, then moved: ROOT records
    the file name inside the file, so a temporary name would make equal runs differ in bytes.

    The content depends only on (seed, sample, file index); ``chunk_events`` (rounded up to whole
    blocks of :data:`EVENTS_PER_BLOCK`) only sets how many events are written per basket.

    ``pixel_hits`` (a geometry name, :data:`~.pixels.GEOMETRIES`): also write the tracks' signal
    hits in that pixel detector (the ``hit_*`` branches); None: none, and the file is the same.
    """
    if chunk_events < 1:
        raise ValueError("chunk_events must be positive")
    hits_geometry = None if pixel_hits is None else pixel_geometry(pixel_hits)
    proc = get_process(process)
    multiplicity = file_multiplicities(process, plan_entry, seed, sample)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / plan_entry.name
    tmp_dir = temporary_path(final, thread=True)
    tmp = tmp_dir / plan_entry.name
    file_uuid = _file_uuid(seed, sample, plan_entry.index)
    try:
        tmp_dir.mkdir(exist_ok=True)
        with _frozen_uproot_clock(), uproot.recreate(tmp, uuid_function=lambda: file_uuid) as root_file:
            tree = None
            for arrays in _file_chunks(proc, plan_entry, seed, sample, multiplicity, chunk_events, hits_geometry):
                if tree is None:
                    tree = root_file.mktree(TREE_NAME, arrays, counter_name=COUNTER_NAMES.__getitem__)
                else:
                    tree.extend(arrays)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        if tmp_dir.exists():
            tmp_dir.rmdir()
    return final


def generate_sample(
    process: str,
    n_jets: int,
    events_per_file: int,
    seed: int,
    sample: str,
    out_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
    pixel_hits: str | None = None,
) -> list[Path]:
    """Plan and generate all files of a sample of exactly ``n_jets`` jets; report progress(jets
    written, n_jets) after each file. ``pixel_hits``: as :func:`generate_file`."""
    plans = plan_files(process, n_jets, events_per_file, seed, sample)
    paths, written = [], 0
    for entry in plans:
        paths.append(generate_file(process, entry, seed, sample, out_dir, chunk_events=chunk_events,
                                   pixel_hits=pixel_hits))
        written += entry.n_jets
        if progress is not None:
            progress(written, n_jets)
    return paths
