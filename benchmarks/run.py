"""Stage-by-stage benchmarks of tracerflow against its anchors.

Run as ``python benchmarks/run.py [--jets N] [--quick] [--skip-training] [--skip-ddp] [--skip-events]
[--skip-load] [--skip-scheduling] [--skip-batch] [--skip-background]``. The embedded default
analysis (configs/default.yaml) is loaded with ``--set``-style overrides that only scale the toy
samples' ``n_jets`` (keeping their ttbar:zprime proportion and files of the default size) and
move the output below ``benchmarks/work/``; every stage then runs the library function with the
config's own template, chunk, precision and compression settings; the training and prediction
rows (benchmarks/training.py) then train on the train file written there, and so do the DDP rows
(benchmarks/ddp.py: TrainFold[0] at world size 1 and 2 on this machine); the event-level rows
(benchmarks/events.py) run the shipped event-level toy analysis on its own; the load rows
(benchmarks/load.py) run the default DAG through one training epoch at 10^5 and 10^6 jets, one
process per stage, for its peak memory against sample size; the start-up and scheduling rows
(benchmarks/scheduling.py) time ``tracerflow --help`` against ``import torch`` and runs through
ApplySelections of 1,000 tiny input files on the local and a central scheduler (an earlier
10,000-file record is kept); the batch rows (benchmarks/batch.py) run ``tracerflow run --batch
slurm`` on a single-node Slurm for the per-job overhead and the latency per dependency level,
against law's default timing; the background rows (benchmarks/background.py) time the pixel-background
generator's models per event at the default and Belle II geometries and compare their events with the
toy's reference simulation (an earlier record is kept when skipped). Prints a table and writes
``benchmarks/results.json``. Benchmarks
report, they do not gate: the exit code is 0 even when a goal is missed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import awkward as ak
import h5py
import numpy as np
import uproot

import tracerflow
from tracerflow.config.load import Config, SampleFile, load_config
from tracerflow.events.build import build_events
from tracerflow.graphs.build import build_graphs
from tracerflow.selections.apply import apply_selection
from tracerflow.tasks.build_events import entry_filter
from tracerflow.templates.loader import load_template
from tracerflow.toy import generate_sample

from ddp import bench_ddp
from events import bench_events
from load import RUN_SIZES, bench_load, merge_results as merge_load
from preprocessing import bench_preprocessing
from background import bench_background, merge_results as merge_background
from batch import bench_batch, merge_results as merge_batch
from scheduling import RUN_SIZES as SCHEDULING_SIZES, bench_scheduling, merge_results as merge_scheduling
from training import bench_training

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results.json"
DEFAULT_JETS = 1_000_000
QUICK_JETS = 100_000
CREATED_BY = "benchmarks/run.py"
EVENTS_GOAL_FRACTION = 0.5
GRAPHS_GOAL = 100_000.0
CACHE_GOAL = 2.0
MEMORY_GOAL = 1.3
MEMORY_SMALL_FRACTION = 8
MEMORY_PROCESS = "zprime"
ANALYSISG_GRAPHS_PER_S = 42.0
ANALYSISG_CACHE_FACTOR = 170.0
MIB = 1 << 20


@dataclass
class Row:
    """One line of the results table."""

    stage: str
    work_size: int
    throughput: float
    unit: str
    anchor: str | None
    anchor_value: float | None
    ratio: float | None
    goal: str
    met: bool | None
    seconds: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class InputFile:
    """One generated ROOT file of the benchmark sample and the caches built from it."""

    sample: str
    source: SampleFile
    events: Path
    graphs: Path
    selections: Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options: total jets, or --quick for a 100k-jet smoke run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=None, help=f"total jets over all samples (default {DEFAULT_JETS:,})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run with {QUICK_JETS:,} jets")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the results JSON")
    parser.add_argument("--skip-training", action="store_true",
                        help="leave out the training and prediction rows (benchmarks/training.py)")
    parser.add_argument("--skip-ddp", action="store_true",
                        help="leave out the distributed-training rows (benchmarks/ddp.py)")
    parser.add_argument("--skip-events", action="store_true",
                        help="leave out the event-level analysis rows (benchmarks/events.py)")
    parser.add_argument("--skip-load", action="store_true",
                        help="leave out the peak-memory-against-size rows (benchmarks/load.py; earlier ones are kept)")
    parser.add_argument("--skip-scheduling", action="store_true",
                        help="leave out the start-up and scheduling rows (benchmarks/scheduling.py; earlier ones are kept)")
    parser.add_argument("--skip-batch", action="store_true",
                        help="leave out the Slurm batch rows (benchmarks/batch.py; earlier ones are kept)")
    parser.add_argument("--skip-background", action="store_true",
                        help="leave out the background-generator speed and quality rows (benchmarks/background.py; "
                             "earlier ones are kept)")
    args = parser.parse_args(argv)
    args.jets = args.jets or (QUICK_JETS if args.quick else DEFAULT_JETS)
    return args


def sample_overrides(n_jets: int, work_dir: Path) -> list[str]:
    """``--set`` overrides scaling every generated default sample to ``n_jets`` jets in total."""
    default = load_config(None)
    generated = {name: spec["generate"]["n_jets"] for name, spec in default["samples"].items() if spec["generate"]}
    total = sum(generated.values())
    names = sorted(generated)
    shares = {name: n_jets * generated[name] // total for name in names}
    shares[names[0]] += n_jets - sum(shares.values())
    overrides = [f"project.output_dir={work_dir}"]
    overrides += [f"samples.{name}.generate.n_jets={shares[name]}" for name in names]
    return overrides


def input_files(cfg: Config) -> list[InputFile]:
    """Every planned file of every generated sample with the paths of its caches."""
    files = []
    for sample, spec in cfg["samples"].items():
        if spec["generate"] is None:
            continue
        for source in cfg.sample_files(sample):
            stem = source.logical.removesuffix(".root")
            files.append(InputFile(
                sample, source,
                cfg.output_root / "events" / sample / f"{stem}.h5",
                cfg.output_root / "graphs" / sample / f"{stem}.h5",
                cfg.output_root / "selections" / sample / f"{stem}.h5",
            ))
    return files


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call (perf_counter) and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def best_of(repeats: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """Shortest wall time of ``repeats`` calls and the result of the last one."""
    best, result = float("inf"), None
    for _ in range(repeats):
        seconds, result = timed(action)
        best = min(best, seconds)
    return best, result


def info_row(stage: str, work: int, seconds: float, unit: str, detail: str = "") -> Row:
    """A row that reports a throughput without a goal."""
    return Row(stage, work, work / seconds, unit, None, None, None, "info", None, seconds, detail)


def generate_samples(cfg: Config) -> Row:
    """Generate every toy sample of the config (GenerateSample's call) and time it in jets/s."""
    def run() -> int:
        jets = 0
        for sample, spec in cfg["samples"].items():
            gen = spec["generate"]
            if gen is not None:
                generate_sample(gen["process"], gen["n_jets"], gen["events_per_file"], cfg.seed, sample,
                                cfg.sample_dir(sample))
                jets += gen["n_jets"]
        return jets

    seconds, jets = timed(run)
    return info_row("GenerateSample", jets, seconds, "jets/s", "toy detector, all samples, one process")


def warm_page_cache(paths: list[Path]) -> int:
    """Read every file once so the reading rows see a warm page cache; return the bytes read."""
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(16 * MIB):
                total += len(block)
    return total


def iterate_uproot(files: list[InputFile], branches: list[str], step: int, tree: str) -> int:
    """Read the branches of every file with bare uproot.iterate; return the events read."""
    events = 0
    for arrays in uproot.iterate({str(f.source.path): tree for f in files}, branches,
                                 step_size=step, library="ak"):
        events += len(arrays)
    return events


def bench_uproot(cfg: Config, files: list[InputFile], repeats: int) -> Row:
    """Row 1: bare uproot.iterate over exactly the event template's branches, in events/s."""
    branches = load_template(cfg, "event").branches()
    step = cfg["event"]["chunk_size"]
    tree = cfg["samples"][files[0].sample]["tree"]
    seconds, events = best_of(repeats, lambda: iterate_uproot(files, branches, step, tree))
    return Row("uproot.iterate (bare)", events, events / seconds, "events/s", "self: anchor of BuildEvents", None,
               None, "anchor", None, seconds, f"{len(branches)} branches, step_size={step}, library='ak'")


def build_events_file(cfg: Config, item: InputFile) -> int:
    """BuildEvents of one input file with the config's event settings; return the events written."""
    event = cfg["event"]
    tree = cfg["samples"][item.sample]["tree"]
    stats = build_events(
        item.source.path, item.events, load_template(cfg, "event"),
        sample=item.sample, logical_file=item.source.logical, tree=tree,
        config_digest=cfg.digest(f"samples.{item.sample}.tree", "event", extra=item.source.logical),
        created_by=CREATED_BY, entry_filter=entry_filter(event), chunk_size=event["chunk_size"],
        threads=event["threads"], compression=event["compression"], non_finite=event["non_finite"],
        fill_value=event["fill_value"],
    )
    return stats.events


def bench_build_events(cfg: Config, files: list[InputFile], anchor: Row, repeats: int) -> Row:
    """Row 2: BuildEvents over the same files, against bare uproot.iterate."""
    seconds, events = best_of(repeats, lambda: sum(build_events_file(cfg, f) for f in files))
    throughput = events / seconds
    ratio = throughput / anchor.throughput
    event = cfg["event"]
    return Row("BuildEvents", events, throughput, "events/s", "bare uproot.iterate, measured in this run",
               anchor.throughput, ratio, f">= {EVENTS_GOAL_FRACTION} x anchor", ratio >= EVENTS_GOAL_FRACTION,
               seconds, f"chunk_size={event['chunk_size']}, compression={event['compression']}, "
                        f"threads={event['threads']}")


def build_graphs_file(cfg: Config, item: InputFile) -> int:
    """BuildGraphs of one events file with the config's graph settings; return the graphs written."""
    graph = cfg["graph"]
    stats = build_graphs(
        item.events, item.graphs, load_template(cfg, "graph"),
        config_digest=cfg.digest("graph", extra=item.source.logical), created_by=CREATED_BY,
        precision=graph["precision"], compression=graph["compression"], chunk_size=graph["chunk_size"],
    )
    return stats.graphs


def bench_build_graphs(cfg: Config, files: list[InputFile]) -> Row:
    """Row 3: BuildGraphs over every events file, in graphs/s."""
    seconds, graphs = timed(lambda: sum(build_graphs_file(cfg, f) for f in files))
    throughput = graphs / seconds
    graph = cfg["graph"]
    topology = graph["template"]["topology"] if isinstance(graph["template"], dict) else graph["template"]
    return Row("BuildGraphs", graphs, throughput, "graphs/s",
               "AnalysisG ~42 events/s with graphs (documented, not measured here)", ANALYSISG_GRAPHS_PER_S,
               throughput / ANALYSISG_GRAPHS_PER_S, f">= {GRAPHS_GOAL:,.0f} graphs/s", throughput >= GRAPHS_GOAL,
               seconds, f"topology={topology}, precision={graph['precision']}, compression={graph['compression']}, "
                        f"chunk_size={graph['chunk_size']}")


def cache_size_row(files: list[InputFile]) -> Row:
    """Row 4: (events + graphs HDF5 bytes) / ROOT input bytes."""
    root = sum(f.source.path.stat().st_size for f in files)
    events = sum(f.events.stat().st_size for f in files)
    graphs = sum(f.graphs.stat().st_size for f in files)
    factor = (events + graphs) / root
    return Row("Cache size (events+graphs)/ROOT", root, factor, "x ROOT bytes",
               "AnalysisG ~170x (documented, not measured here)", ANALYSISG_CACHE_FACTOR,
               factor / ANALYSISG_CACHE_FACTOR, f"<= {CACHE_GOAL}", factor <= CACHE_GOAL, None,
               f"ROOT {root / MIB:.1f} MiB, events {events / MIB:.1f} MiB, graphs {graphs / MIB:.1f} MiB")


def apply_selections_file(cfg: Config, item: InputFile) -> int:
    """ApplySelections of one events file with the config's selection; return the rows (jets) seen."""
    cutflow = apply_selection(
        item.events, item.selections, load_template(cfg, "selection"),
        config_digest=cfg.digest("selection", extra=item.source.logical), created_by=CREATED_BY,
        chunk_size=cfg["selection"]["chunk_size"],
    )
    return int(cutflow.passed[0])


def bench_selections(cfg: Config, files: list[InputFile]) -> Row:
    """Row 6: ApplySelections over every events file, in jets/s (information only)."""
    seconds, jets = timed(lambda: sum(apply_selections_file(cfg, f) for f in files))
    return info_row("ApplySelections", jets, seconds, "jets/s",
                    f"level={load_template(cfg, 'selection').level}, chunk_size={cfg['selection']['chunk_size']}")


def high_water_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM; unlike ru_maxrss it restarts at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_child(overrides: list[str], source: str, out: str, sample: str, queue: Any) -> None:
    """In a fresh process: BuildEvents of one file; report (peak RSS after imports, at the end, events)."""
    cfg = load_config(None, overrides)
    event = cfg["event"]
    template = load_template(cfg, "event")
    baseline = high_water_rss()
    stats = build_events(
        source, out, template, sample=sample, logical_file=Path(source).name, tree="events",
        config_digest="benchmark", created_by=CREATED_BY, entry_filter=entry_filter(event),
        chunk_size=event["chunk_size"], threads=event["threads"], compression=event["compression"],
        non_finite=event["non_finite"], fill_value=event["fill_value"],
    )
    peak = high_water_rss()
    queue.put((baseline, peak, stats.events, stats.chunks))


def measure_peak_rss(overrides: list[str], source: Path, out: Path, sample: str) -> tuple[int, int, int, int]:
    """Run :func:`peak_rss_child` in a spawned process; return (baseline bytes, peak bytes, events, chunks)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=peak_rss_child, args=(overrides, str(source), str(out), sample, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"peak-RSS child for {source} exited with {process.exitcode}")
    return result


def one_file_sample(cfg: Config, n_jets: int, sample: str, out_dir: Path) -> Path:
    """Generate a toy sample of ``n_jets`` jets as a single ROOT file."""
    paths = generate_sample(MEMORY_PROCESS, n_jets, 1 << 40, cfg.seed, sample, out_dir)
    if len(paths) != 1:
        raise RuntimeError(f"expected one file for {sample}, got {len(paths)}")
    return paths[0]


def bench_peak_memory(cfg: Config, overrides: list[str], n_jets: int, work_dir: Path) -> Row:
    """Row 5: peak RSS of BuildEvents on one file of all jets vs one file of 1/8 of them."""
    mem_dir = work_dir / "memory"
    small_jets = max(1, n_jets // MEMORY_SMALL_FRACTION)
    small = one_file_sample(cfg, small_jets, "memory_small", mem_dir)
    large = one_file_sample(cfg, n_jets, "memory_large", mem_dir)
    base_s, peak_s, events_s, chunks_s = measure_peak_rss(overrides, small, mem_dir / "small.h5", "memory_small")
    base_l, peak_l, events_l, chunks_l = measure_peak_rss(overrides, large, mem_dir / "large.h5", "memory_large")
    ratio = peak_l / peak_s
    detail = (f"{MEMORY_PROCESS}; small: {small_jets:,} jets, {events_s:,} events, {chunks_s} chunk(s), "
              f"{small.stat().st_size / MIB:.0f} MiB ROOT, peak {peak_s / MIB:.0f} MiB (after imports {base_s / MIB:.0f}); "
              f"large: {n_jets:,} jets, {events_l:,} events, {chunks_l} chunk(s), "
              f"{large.stat().st_size / MIB:.0f} MiB ROOT, peak {peak_l / MIB:.0f} MiB (after imports {base_l / MIB:.0f}); "
              f"chunk_size={cfg['event']['chunk_size']}")
    goal, met = f"large/small <= {MEMORY_GOAL}", ratio <= MEMORY_GOAL
    if chunks_l < 2:
        goal, met = goal + " (n/a: large file is 1 chunk)", None
    return Row("BuildEvents peak RSS, 1 file", events_l, peak_l / MIB, "MiB",
               f"same on a 1/{MEMORY_SMALL_FRACTION}-size file (MiB)", peak_s / MIB, ratio, goal, met, None, detail)


def json_ready(value: Any) -> Any:
    """NaN and inf as null (strict JSON), numpy scalars as Python numbers, at any depth."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def merge_block(path: Path, key: str, block: dict[str, Any] | None, rows_of: Callable[[dict[str, Any]], list[Any]],
                prefixes: tuple[str, ...]) -> list[Any]:
    """Put a benchmark's record ``block`` (None: the one the results file has) under ``key`` in the
    results file, with its rows (``rows_of(block)``) in place of the rows whose stage starts with
    one of ``prefixes``; returns those rows (none without a record)."""
    payload = json.loads(path.read_text()) if path.exists() else {"machine": machine(), "rows": []}
    block = json_ready(block) if block else payload.get(key)
    if not block:
        return []
    rows = rows_of(block)
    payload[key] = block
    payload["rows"] = ([r for r in payload["rows"] if not r["stage"].startswith(prefixes)]
                       + [json_ready(asdict(r)) for r in rows])
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "node": platform.node(), "platform": platform.platform(), "cpu": model or platform.processor(),
        "cpus": os.cpu_count(), "memory_gib": round(memory / (1 << 30), 1), "python": platform.python_version(),
        "versions": {"tracerflow": tracerflow.__version__, "numpy": np.__version__, "awkward": ak.__version__,
                     "uproot": uproot.__version__, "h5py": h5py.__version__},
    }


def format_number(value: float | None) -> str:
    """Compact human formatting for the table."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_table(rows: list[Row]) -> None:
    """Print the results as a fixed-width table, then the details of each row."""
    header = ("stage", "work", "throughput", "unit", "anchor value", "ratio", "goal", "met")
    lines = [(r.stage, f"{r.work_size:,}", format_number(r.throughput), r.unit, format_number(r.anchor_value),
              format_number(r.ratio), r.goal, {True: "yes", False: "NO", None: "-"}[r.met]) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    for line in [header, tuple("-" * w for w in widths), *lines]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    print()
    for r in rows:
        time_text = f"{r.seconds:.2f} s; " if r.seconds is not None else ""
        print(f"  {r.stage}: {time_text}anchor: {r.anchor or '-'}; {r.detail}")
    missed = [r.stage for r in rows if r.met is False]
    print()
    print(f"GOALS MISSED: {', '.join(missed)}" if missed else "All goals met.")


def write_results(path: Path, rows: list[Row], n_jets: int, overrides: list[str], seconds: float,
                  event_level: dict[str, Any] | None = None) -> None:
    """Write the rows and run metadata as JSON (``event_level``: what the event-level rows ran)."""
    payload: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "jets": n_jets,
        "config": "<embedded default>",
        "config_overrides": overrides,
        "total_seconds": round(seconds, 1),
        "rows": [asdict(r) for r in rows],
    }
    if event_level is not None:
        payload["event_level"] = {"date": payload["date"], **event_level}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def run(n_jets: int, repeats: int, training: bool = True, events: bool = True,
        quick: bool = False, ddp: bool = True) -> tuple[list[Row], list[str], dict[str, Any] | None]:
    """Generate the sample, run every benchmark row on it, then the event-level rows; return the rows,
    the overrides and what the event-level rows ran."""
    work_dir = WORK / f"jets_{n_jets}"
    shutil.rmtree(work_dir, ignore_errors=True)
    overrides = sample_overrides(n_jets, work_dir)
    cfg = load_config(None, overrides)
    files = input_files(cfg)
    print(f"{n_jets:,} jets in {len(files)} files; overrides: {' '.join(overrides)}", flush=True)
    generate = generate_samples(cfg)
    print(f"  generated in {generate.seconds:.1f} s", flush=True)
    warm_page_cache([f.source.path for f in files])
    uproot_row = bench_uproot(cfg, files, repeats)
    print(f"  uproot.iterate {uproot_row.seconds:.1f} s", flush=True)
    events_row = bench_build_events(cfg, files, uproot_row, repeats)
    print(f"  BuildEvents {events_row.seconds:.1f} s", flush=True)
    graphs_row = bench_build_graphs(cfg, files)
    print(f"  BuildGraphs {graphs_row.seconds:.1f} s", flush=True)
    selections_row = bench_selections(cfg, files)
    print(f"  ApplySelections {selections_row.seconds:.1f} s", flush=True)
    preprocessing_rows = bench_preprocessing(cfg, files, work_dir, Row, repeats)
    training_rows = bench_training(cfg, files, work_dir, Row) if training else []
    ddp_rows = bench_ddp(cfg, work_dir, Row) if training and ddp else []
    memory_row = bench_peak_memory(cfg, overrides, n_jets, work_dir)
    print("  peak memory done", flush=True)
    event_rows, event_level = bench_events(Row, quick=quick) if events else ([], None)
    rows = [uproot_row, events_row, graphs_row, cache_size_row(files), memory_row, selections_row, generate,
            *preprocessing_rows, *training_rows, *ddp_rows, *event_rows]
    return rows, overrides, event_level


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write results.json; always exit 0."""
    args = parse_args(argv)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    earlier, earlier_scheduling = previous.get("load"), previous.get("scheduling")
    earlier_batch, earlier_background = previous.get("batch"), previous.get("background")
    start = time.perf_counter()
    seconds, (rows, overrides, event_level) = timed(lambda: run(args.jets, repeats=2, training=not args.skip_training,
                                                                events=not args.skip_events, quick=args.quick,
                                                                ddp=not args.skip_ddp))
    load_sizes = {} if args.skip_load else bench_load(RUN_SIZES)
    startup, scheduling_sizes = (None, {}) if args.skip_scheduling else bench_scheduling(SCHEDULING_SIZES)
    batch = None if args.skip_batch else bench_batch()
    background = None if args.skip_background else bench_background()
    write_results(args.output, rows, args.jets, overrides, seconds, event_level)
    rows += merge_load(args.output, load_sizes, Row, earlier=earlier)
    rows += merge_scheduling(args.output, startup, scheduling_sizes, Row, earlier=earlier_scheduling)
    rows += merge_batch(args.output, batch, Row, earlier=earlier_batch)
    rows += merge_background(args.output, background, Row, earlier=earlier_background)
    print()
    print_table(rows)
    print(f"\nwrote {args.output} ({time.perf_counter() - start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
