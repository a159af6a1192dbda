"""Benchmark rows of the preprocessing stages: Resample, WriteTrainSample and ConvertTFRecords.

:func:`bench_preprocessing` runs on the selections and graphs files that ``benchmarks/run.py``
has just built and calls the same library functions the luigi tasks call, with the config's
own settings, without luigi:

- Resample (``pdf`` and ``countup``): ``resample(spec, selection_chunks(...))`` over every
  selections file, then ``write_resampled`` of every split (each jet's selection outputs and
  graph nodes gathered in final order), timed against umami-preprocessing (UPP) resampling
  exactly those jets with their 40 padded tracks in the same run (see ``upp_anchor.py``): both
  sides copy the tracks as they resample. UPP on the jets alone is reported in the detail.
- WriteTrainSample (umami format, train split): scale-dict pass over the resampled file and
  ``write_umami``, against a bare h5py write of the very arrays that ended up in the file; both
  start with no file at their path and no dirty pages (``os.sync``).
- ConvertTFRecords: ``write_tfrecords`` of that train file.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

import h5py
import numpy as np

from tracerflow.config.load import Config
from tracerflow.io.resampled_file import INDEX_COLUMNS
from tracerflow.resample import ResampleResult, ResampleSpec, resample, spec_from_config
from tracerflow.resample.gather import SourcePaths, write_resampled
from tracerflow.resample.inputs import selection_chunks
from tracerflow.resample.classes import SPEC_KEYS
from tracerflow.tfrecords.writer import write_tfrecords
from tracerflow.write.kernels import pad_tracks
from tracerflow.write.train_chunks import Columns
from tracerflow.write.train_sample import train_columns, write_train_sample

import upp_anchor

CREATED_BY = "benchmarks/preprocessing.py"
UPP_METHODS = ("pdf", "countup")
RESAMPLE_GOALS = {"pdf": 2.0, "countup": 4.0}
WRITE_GOAL = 1.5
WRITE_REPEATS = 3
TFRECORDS_GOAL = 100_000.0
TRAIN_SPLIT = "train"
EVENT_NUMBER_MASK = np.uint64((1 << 63) - 1)
UPP_INSTALL_COMMAND = ("python3 -m venv benchmarks/.upp-venv && "
                       "benchmarks/.upp-venv/bin/python -m pip install -r benchmarks/upp_requirements.txt")
MIB = 1 << 20


class RowLike(Protocol):
    """The fields of ``benchmarks/run.py``'s ``Row`` that this module reads back."""

    seconds: float | None
    detail: str


R = TypeVar("R", bound=RowLike)


class CachedFile(Protocol):
    """What this module needs of one input file of ``benchmarks/run.py``: its sample, logical
    name and the selections and graphs files built from it."""

    sample: str
    source: Any
    selections: Path
    graphs: Path


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call (perf_counter) and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def resample_spec(cfg: Config, method: str) -> ResampleSpec:
    """The ResampleSpec the Resample task builds from the config, with ``method`` overridden."""
    block = cfg["resample"]
    return spec_from_config({**{k: block[k] for k in (*SPEC_KEYS, "label", "classes", "target")}, "method": method},
                            cfg.seed)


def run_resample(cfg: Config, files: Sequence[CachedFile], method: str) -> dict[str, ResampleResult]:
    """Resample's library call on every selections file, every split at once, with ``method``."""
    block = cfg["resample"]
    spec = resample_spec(cfg, method)
    chunks = selection_chunks([f.selections for f in files], [spec.label, *spec.variables], block["chunk_size"],
                              weight=block["weight"])
    return resample(spec, chunks)


def write_split(cfg: Config, files: Sequence[CachedFile], method: str, result: ResampleResult, path: Path) -> int:
    """Write one split's resampled file as the Resample task does (rows, jets, graph nodes); the node count."""
    spec = resample_spec(cfg, method)
    return write_resampled(path, {name: getattr(result, name) for name in (*INDEX_COLUMNS, "label", "weight")},
                           split=result.split, classes=spec.class_names,
                           sources=[(f.sample, f.source.logical) for f in files],
                           paths=[SourcePaths(f.selections, f.graphs) for f in files], config_digest="benchmark",
                           created_by=CREATED_BY, attrs={"method": method if result.resampled else "none"})


def resample_and_write(cfg: Config, files: Sequence[CachedFile], method: str,
                       out_dir: Path) -> tuple[dict[str, ResampleResult], dict[str, float]]:
    """Resample with ``method`` and write every split to ``out_dir/<split>.h5``; results and phase seconds."""
    start = time.perf_counter()
    results = run_resample(cfg, files, method)
    phases = {"resample": time.perf_counter() - start}
    start = time.perf_counter()
    for split, result in results.items():
        write_split(cfg, files, method, result, out_dir / f"{split}.h5")
    phases["write"] = time.perf_counter() - start
    return results, phases


def best_resample(cfg: Config, files: Sequence[CachedFile], method: str, repeats: int,
                  out_dir: Path) -> tuple[float, dict[str, float], dict[str, ResampleResult]]:
    """Shortest wall time of ``repeats`` Resample runs (all splits written) with ``method``, its phases,
    and the last result."""
    best, phases, result = float("inf"), {}, {}
    for _ in range(repeats):
        result, times = resample_and_write(cfg, files, method, out_dir)
        if sum(times.values()) < best:
            best, phases = sum(times.values()), times
    return best, phases, result


def selected_jet_count(files: Sequence[CachedFile]) -> int:
    """Selected jets in all selections files: the input of Resample."""
    total = 0
    for f in files:
        with h5py.File(f.selections, "r") as sel:
            total += int(sel["index/hash"].shape[0])
    return total


def upp_variables(cfg: Config) -> dict[str, list[list[float]]]:
    """The config's resampling bins as ``{name: [[low, high, n], ...]}`` for UPP."""
    out = {}
    for name, bins in cfg["resample"]["variables"].items():
        out[name] = bins["bins"] if isinstance(bins, Mapping) else bins
    return out


def upp_inputs(cfg: Config, files: Sequence[CachedFile],
               columns: Columns) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Every selected jet (Resample's input, in its order) with its padded tracks, for UPP.

    Jets: the resampling variables, the label as ``flavour`` and the event hash (63 bits) as
    ``event_number``. Tracks: the graph node features WriteTrainSample puts in the train sample
    (``columns.track_vars``), in the graphs' precision, in ``columns.max_tracks`` slots.
    """
    block = cfg["resample"]
    variables = list(upp_variables(cfg))
    jets: dict[str, list[np.ndarray]] = {name: [] for name in [*variables, "flavour", "event_number"]}
    tracks: dict[str, list[np.ndarray]] = {name: [] for name in columns.track_vars}
    valid_parts = []
    slots = np.arange(columns.max_tracks)
    for f in files:
        with h5py.File(f.selections, "r") as sel, h5py.File(f.graphs, "r") as graphs:
            for name in variables:
                jets[name].append(sel[f"derived/{name}"][:])
            jets["flavour"].append(sel[f"derived/{block['label']}"][:].astype(np.int32))
            hashes = sel["index/hash"][:]
            jets["event_number"].append((hashes & EVENT_NUMBER_MASK).astype(np.int64))
            graph = sel["index/row"][:].astype(np.int64)
            if not np.array_equal(graphs["index/hash"][:][graph], hashes):
                raise RuntimeError(f"{f.graphs}: graphs do not line up with {f.selections}")
            names = json.loads(graphs["nodes/x"].attrs["names"])
            counts = graphs["nodes/counts"][:].astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)])
            x = graphs["nodes/x"][:]
        valid = slots[None, :] < np.minimum(counts[graph], columns.max_tracks)[:, None]
        node = (offsets[graph][:, None] + slots[None, :])[valid]
        for name in columns.track_vars:
            padded = np.zeros(valid.shape, x.dtype)
            padded[valid] = x[node, names.index(name)]
            tracks[name].append(padded)
        valid_parts.append(valid)
    return ({k: np.concatenate(v) for k, v in jets.items()}, {k: np.concatenate(v) for k, v in tracks.items()},
            np.concatenate(valid_parts))


def measure_upp(upp_dir: Path, method: str, variables: Mapping[str, Any], *, with_tracks: bool,
                max_tracks: int, repeats: int) -> dict[str, Any] | str:
    """UPP's resampling of the inputs in ``upp_dir``: the fastest of ``repeats`` runs by in-process
    time, or a one-line reason when UPP fails."""
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        try:
            result = upp_anchor.run_upp(upp_dir, method, variables=variables, with_tracks=with_tracks,
                                        max_tracks=max_tracks if with_tracks else None)
        except (RuntimeError, OSError, ValueError, KeyError) as err:
            return f"UPP failed: {err}"
        if best is None or result["stage_seconds"] < best["stage_seconds"]:
            best = result
    assert best is not None
    return best


def upp_unsupported(cfg: Config) -> str | None:
    """Why the config's resampling cannot be handed to the UPP harness as it is, or None."""
    block = cfg["resample"]
    harness = {name: label for label, name in upp_anchor.CLASS_OF_LABEL.items()}
    if dict(block["classes"]) != harness:
        return f"n/a: the UPP harness knows the classes {harness}, the config has {dict(block['classes'])}"
    if block["target"] != upp_anchor.TARGET_CLASS:
        return f"n/a: the UPP harness resamples to {upp_anchor.TARGET_CLASS}, the config to {block['target']}"
    if block["upscale_pdf"] != 1:
        return "n/a: the UPP harness runs without upscale_pdf"
    return None


def run_upp_anchors(cfg: Config, files: Sequence[CachedFile], columns: Columns, upp_dir: Path,
                    repeats: int) -> tuple[dict[tuple[str, bool], dict[str, Any] | str], float]:
    """UPP on Resample's jets: every method with and without tracks, each the best of ``repeats`` runs.

    Returns the results keyed by (method, with_tracks), each a result dict or an "n/a" reason,
    and the seconds spent writing UPP's input file (not part of any measurement).
    """
    if not upp_anchor.upp_available():
        reason = f"n/a: UPP not installed; run `{UPP_INSTALL_COMMAND}`"
        return {(m, t): reason for m in UPP_METHODS for t in (False, True)}, 0.0
    reason = upp_unsupported(cfg)
    if reason is not None:
        return {(m, t): reason for m in UPP_METHODS for t in (False, True)}, 0.0
    start = time.perf_counter()
    jets, tracks, valid = upp_inputs(cfg, files, columns)
    upp_anchor.write_upp_inputs(upp_dir, jets, tracks, valid)
    del jets, tracks, valid
    export_seconds = time.perf_counter() - start
    variables = upp_variables(cfg)
    results: dict[tuple[str, bool], dict[str, Any] | str] = {}
    for with_tracks in (False, True):
        for method in UPP_METHODS:
            results[method, with_tracks] = measure_upp(upp_dir, method, variables, with_tracks=with_tracks,
                                                       max_tracks=columns.max_tracks, repeats=repeats)
            print(f"  UPP {method} {'with' if with_tracks else 'without'} tracks done", flush=True)
    return results, export_seconds


def split_sizes(results: Mapping[str, ResampleResult]) -> str:
    """Output rows per split, e.g. ``train 812,345 / val 101,234 / test 99,876``."""
    return " / ".join(f"{name} {len(result):,}" for name, result in results.items())


def upp_text(result: dict[str, Any], ours: float) -> str:
    """One UPP measurement for a row's detail: counts, in-process and whole-subprocess rates."""
    tracks = f"{result['tracks_per_jet']} tracks/jet" if result["with_tracks"] else "no tracks"
    return (f"{tracks}: {result['jets_in']:,} in -> {result['jets_out']:,} out; inside Resampling.run "
            f"{result['stage_seconds']:.2f} s = {result['stage_jets_per_s']:,.0f} jets/s "
            f"(read {result['read_seconds']:.2f}, select {result['select_seconds']:.2f}, "
            f"write {result['write_seconds']:.2f}, other {result['other_seconds']:.2f} s), ours/that "
            f"{ours / result['stage_jets_per_s']:.2f}; whole subprocess {result['seconds']:.2f} s = "
            f"{result['jets_per_s']:,.0f} jets/s (ours/that {ours / result['jets_per_s']:.2f}); "
            f"peak RSS {result['peak_rss_mib']:,.0f} MiB")


def resample_row(row_type: Callable[..., R], cfg: Config, method: str, n_jets: int, seconds: float,
                 phases: Mapping[str, float], results: Mapping[str, ResampleResult],
                 upp: Mapping[tuple[str, bool], dict[str, Any] | str]) -> R:
    """Row of Resample with ``method`` (all splits written with their tracks) against UPP's whole
    ``--resample`` run with the 40 padded tracks of every jet (the reference ~47k jets/s); UPP on
    the jets alone (the reference ~293k jets/s) and the time inside UPP's resampling call are in the detail.
    """
    throughput = n_jets / seconds
    goal = RESAMPLE_GOALS[method]
    block = cfg["resample"]
    train = results.get(TRAIN_SPLIT)
    fraction = f"{train.sampling_fraction:.3g}" if train is not None else "-"
    ours = (f"ours: {n_jets:,} selected jets (all splits) in -> {split_sizes(results)} rows out, "
            f"resample {phases['resample']:.2f} s + write_resampled of every split (selection outputs and "
            f"graph nodes gathered in final order) {phases['write']:.2f} s, "
            f"chunk_size={block['chunk_size']}, sampling_fraction={block['sampling_fraction']} "
            f"(train: {fraction})")
    with_tracks, plain = upp[method, True], upp[method, False]
    if isinstance(with_tracks, str):
        return row_type(f"Resample {method}", n_jets, throughput, "jets/s", "UPP (not measured)", None, None,
                        f">= {goal:g} x UPP (n/a)", None, seconds, f"{with_tracks}; {ours}")
    anchor = with_tracks["jets_per_s"]
    ratio = throughput / anchor
    detail = [ours, f"UPP {with_tracks['upp_version']} {method} (sampling_fraction 1, one pooled sample, no "
                    f"train/val/test split, batch {upp_anchor.DEFAULT_BATCH_SIZE:,}) with "
                    f"{upp_text(with_tracks, throughput)}"]
    if isinstance(plain, str):
        detail.append(f"UPP without tracks: {plain}")
    else:
        detail.append(f"UPP without tracks (jets only; ours always carries the tracks) {upp_text(plain, throughput)}")
    return row_type(f"Resample {method}", n_jets, throughput, "jets/s",
                    f"UPP {with_tracks['upp_version']} {method} --resample run, same jets with their "
                    f"{with_tracks['tracks_per_jet']} padded tracks, this run (as the reference ~47k jets/s was measured)",
                    anchor, ratio, f">= {goal:g} x UPP", ratio >= goal, seconds, "; ".join(detail))


def read_datasets(path: Path) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Every dataset of an HDF5 file in memory, with the creation settings to write it again."""
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                settings = {"dtype": obj.dtype}
                if obj.chunks is not None:
                    settings.update(chunks=obj.chunks, compression=obj.compression,
                                    compression_opts=obj.compression_opts, shuffle=obj.shuffle)
                out[name] = (obj[()], settings)
        f.visititems(visit)
    return out


def settled(path: Path) -> None:
    """Remove ``path`` and write every dirty page out: each timed write then starts from the same
    state (no earlier file to unlink, no other file's pages being flushed while it writes)."""
    path.unlink(missing_ok=True)
    os.sync()


def bare_write(path: Path, datasets: Mapping[str, tuple[np.ndarray, dict[str, Any]]]) -> float:
    """Seconds to write ``datasets`` with plain ``h5py.File.create_dataset``, file closed."""
    settled(path)
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        for name, (data, settings) in datasets.items():
            f.create_dataset(name, data=data, **settings)
    return time.perf_counter() - start


def write_row(row_type: Callable[..., R], cfg: Config, resampled_path: Path, columns: Columns, out_dir: Path,
              repeats: int) -> tuple[R, Path]:
    """Row of WriteTrainSample (umami, train split) against a bare h5py write of the same arrays,
    each the fastest of ``repeats`` runs."""
    write = cfg["write"]
    out_path = out_dir / f"{TRAIN_SPLIT}.h5"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    startup, _ = timed(lambda: pad_tracks(np.zeros((1, 1), np.int8), np.ones(1, np.int64), 1))
    runs = []
    for _ in range(repeats):
        settled(out_path)
        runs.append(write_train_sample(resampled_path, columns, cfg["write"], seed=cfg.seed, umami_path=out_path,
                                       folds_path=None, scale_dict_json=out_path.parent / "scale_dict.json",
                                       config_digest="benchmark", created_by=CREATED_BY,
                                       attrs={"split": TRAIN_SPLIT}).seconds)
    times = min(runs, key=lambda t: sum(t.values()))
    ours = sum(times.values())
    datasets = read_datasets(out_path)
    n_jets = int(datasets["jets/labels"][0].shape[0])
    bare_path = out_dir / f"{TRAIN_SPLIT}_bare.h5"
    bares = [bare_write(bare_path, datasets) for _ in range(repeats)]
    bare = min(bares)
    del datasets
    ratio = ours / bare
    detail = (f"ours {ours:.2f} s = scale dict ready after {times['scale']:.2f} + rest of the umami write "
              f"{times['umami']:.2f} s "
              f"(runs {', '.join(f'{sum(t.values()):.2f}' for t in runs)} s), reading the resampled file "
              f"({resampled_path.stat().st_size / MIB:.0f} MiB), kernels warmed before timing ({startup:.2f} s; "
              f"numba's start-up, ~0.5 s once per process like an import, is not in the row); bare h5py {bare:.2f} s "
              f"(runs {', '.join(f'{b:.2f}' for b in bares)} s); ratio = fastest ours / fastest bare; format umami "
              f"only, precision={write['precision']}, compression={write['compression']}, "
              f"chunk_size={write['chunk_size']}, {columns.max_tracks} tracks x {len(columns.track_vars)} features, "
              f"file {out_path.stat().st_size / MIB:.0f} MiB (bare {bare_path.stat().st_size / MIB:.0f} MiB)")
    bare_path.unlink()
    return row_type("WriteTrainSample (umami, train)", n_jets, n_jets / ours, "jets/s",
                    f"bare h5py create_dataset of the same arrays, same layout (contiguous, or the same chunks "
                    f"and filters), this run, fastest of {repeats}", n_jets / bare, ratio,
                    f"time <= {WRITE_GOAL:g} x bare", ratio <= WRITE_GOAL, ours,
                    detail), out_path


def tfrecords_row(row_type: Callable[..., R], cfg: Config, train_path: Path, out_dir: Path,
                  columns: Columns) -> R:
    """Row of ConvertTFRecords of the train file, in jets/s."""
    block = cfg["tfrecords"]
    seconds, metadata = timed(lambda: write_tfrecords(train_path, out_dir, chunk_size=block["chunk_size"],
                                                      n_add_vars=block["n_add_vars"], created_by=CREATED_BY))
    n_jets = int(metadata["n_jets"])
    size = sum(p.stat().st_size for p in out_dir.glob("shard_*.tfrecord"))
    throughput = n_jets / seconds
    detail = (f"{metadata['n_shards']} shards, chunk_size={block['chunk_size']}, n_add_vars={block['n_add_vars']}, "
              f"{columns.max_tracks} tracks x {metadata['n_trk_features']} features, {size / MIB:.0f} MiB written, "
              f"uncompressed")
    return row_type("ConvertTFRecords (train)", n_jets, throughput, "jets/s", None, None, None,
                    f">= {TFRECORDS_GOAL:,.0f} jets/s", throughput >= TFRECORDS_GOAL, seconds, detail)


def bench_preprocessing(cfg: Config, files: Sequence[CachedFile], work_dir: Path, row_type: Callable[..., R],
                        repeats: int = 2) -> list[R]:
    """Resample (pdf, countup) vs UPP, WriteTrainSample vs bare h5py and ConvertTFRecords, as rows.

    ``files`` are the input files whose selections and graphs files exist; ``row_type`` builds a
    row from (stage, work_size, throughput, unit, anchor, anchor_value, ratio, goal, met,
    seconds, detail). Resample and UPP are best of ``repeats``, WriteTrainSample and its bare write
    best of ``WRITE_REPEATS``; the rest run once.
    The config's method writes its splits where the Resample task would; its train split feeds
    WriteTrainSample, whose train file feeds ConvertTFRecords.
    """
    root = cfg.output_root
    n_jets = selected_jet_count(files)
    method = cfg["resample"]["method"]
    resampled: dict[str, tuple[float, dict[str, float], dict[str, ResampleResult]]] = {}
    for m in UPP_METHODS:
        out_dir = root / "resample" if m == method else work_dir / f"resample_{m}"
        resampled[m] = best_resample(cfg, files, m, repeats, out_dir)
        print(f"  Resample {m} {resampled[m][0]:.1f} s", flush=True)
    if method not in resampled:
        resample_and_write(cfg, files, method, root / "resample")

    columns = train_columns(cfg)
    write, train_path = write_row(row_type, cfg, root / "resample" / f"{TRAIN_SPLIT}.h5", columns,
                                  root / "train_sample", WRITE_REPEATS)
    print(f"  WriteTrainSample {write.seconds:.1f} s", flush=True)
    tfrecords = tfrecords_row(row_type, cfg, train_path, root / "tfrecords" / TRAIN_SPLIT, columns)
    print(f"  ConvertTFRecords {tfrecords.seconds:.1f} s", flush=True)

    upp, export_seconds = run_upp_anchors(cfg, files, columns, work_dir / "upp", repeats)
    rows = [resample_row(row_type, cfg, m, n_jets, *resampled[m], upp) for m in UPP_METHODS]
    if export_seconds:
        for row in rows:
            row.detail += f"; UPP input file written in {export_seconds:.1f} s (not timed)"
    return [*rows, write, tfrecords]
