"""Peak memory against sample size: the default DAG through WriteTrainSample and one training epoch.

For each total jet count N (default 10^5, 10^6 and 10^7) the embedded default analysis is run
from scratch with the real command line, ``tracerflow run --until <stage>``, one process per stage
(GenerateSample, BuildEvents, BuildGraphs, ApplySelections, Resample, WriteTrainSample, then
TrainFold with ``train.epochs=1`` and ``train.folds=[0]``: one epoch of one fold), each process
launched alone so that its peak resident memory and wall time are its stage's. A first process,
``tracerflow validate``, gives the floor every stage starts from (interpreter, imports, config).
The overrides scale ``samples.ttbar/zprime.generate.n_jets`` as ``benchmarks/run.py`` does (same
60:40 split) and set ``events_per_file`` to ``event.chunk_size`` (50,000 events, one BuildEvents
chunk per file, 55 files in all at 10^7 jets); every chunk size, precision and compression is
the default's.

Peak memory is the stage process's ``ru_maxrss`` as ``wait4`` reports it to a small launcher
that forks and execs it (``--launch``): on Linux the high-water mark a process carries across
exec is that of the process it was forked from, so the launcher (~10 MiB) is kept apart from this
driver (which imports tracerflow). Wall time is the launcher's, from fork to exit.

The goal: the largest stage peak at every N within 1.5x of the smallest (``max/min <= 1.5``),
memory bounded by the chunk sizes rather than the sample. ``benchmarks/results.json`` gets a
``load`` block (every (N, stage) measurement with its peak RSS in MiB and wall time, per N its
date and overrides) and the rows ``Load peak RSS, N jets`` and ``Load peak RSS over sizes``.
Sizes measured replace their earlier measurements; sizes not measured in this run keep theirs,
and the ratio row is computed over every size the block holds. Outputs live in
``benchmarks/work/load_N`` and are deleted after each N unless ``--keep``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results.json"
SIZES = (100_000, 1_000_000, 10_000_000)
RUN_SIZES = (100_000, 1_000_000)
STAGES = ("GenerateSample", "BuildEvents", "BuildGraphs", "ApplySelections", "Resample", "WriteTrainSample",
          "TrainFold")
STARTUP = "startup (tracerflow validate)"
TRAIN_OVERRIDES = ("train.epochs=1", "train.folds=[0]")
GOAL = 1.5
KIB = 1024
MIB = 1 << 20
ROW_PREFIX = "Load peak RSS"


def launch(command: Sequence[str], cwd: str, log: str) -> int:
    """Fork, exec ``command`` in ``cwd`` with its output in ``log``, wait; print ``{rc, maxrss_kib, seconds}``.

    Runs in a bare interpreter (``--launch``) so that the high-water mark the child carries across
    exec is this small process's, not the driver's.
    """
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execvp(command[0], list(command))
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                      "seconds": seconds}))
    return 0


def measure(command: Sequence[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of ``command`` run alone; raise with its log's tail on failure."""
    launcher = [sys.executable, "-S", str(Path(__file__).resolve()), "--launch", str(cwd), str(log), "--", *command]
    done = subprocess.run(launcher, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        tail = log.read_text()[-4000:] if log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} exited {result['rc']}; {log}:\n{tail}")
    return result["maxrss_kib"] * KIB / MIB, result["seconds"]


def overrides_for(n_jets: int, work_dir: Path) -> list[str]:
    """``--set`` overrides: ``n_jets`` in the default's proportions, files of one event chunk, one epoch of fold 0."""
    from run import sample_overrides
    from tracerflow.config.load import load_config

    default = load_config(None)
    per_file = default["event"]["chunk_size"]
    generated = [name for name, spec in default["samples"].items() if spec["generate"]]
    return [*sample_overrides(n_jets, work_dir),
            *(f"samples.{name}.generate.events_per_file={per_file}" for name in generated), *TRAIN_OVERRIDES]


def train_jets(output_root: Path) -> dict[str, int]:
    """Jets of each split's umami train file (its ``n_jets`` attribute)."""
    import h5py

    counts = {}
    for path in sorted((output_root / "train_sample").glob("*.h5")):
        if not path.stem.endswith("_folds"):
            with h5py.File(path, "r") as f:
                counts[path.stem] = int(f.attrs["n_jets"])
    return counts


def bench_size(n_jets: int, keep: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage for ``n_jets`` jets from scratch; return the size's record for the ``load`` block."""
    from tracerflow.config.load import load_config

    work_dir = WORK / f"load_{n_jets}"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    overrides = overrides_for(n_jets, work_dir)
    cfg = load_config(None, overrides)
    files = sum(len(cfg.sample_files(s)) for s, spec in cfg["samples"].items() if spec["generate"])
    sets = [arg for o in overrides for arg in ("--set", o)]
    exe = str(Path(sys.executable).with_name("tracerflow"))
    records = []
    start = time.perf_counter()
    for stage in (STARTUP, *STAGES):
        command = [exe, "validate", *sets] if stage == STARTUP else [exe, "run", "--until", stage, *sets]
        log = work_dir / f"{stage.split()[0]}.log"
        peak, seconds = measure(command, work_dir, log)
        records.append({"stage": stage, "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1)})
        echo(f"  {n_jets:>10,} jets  {stage:<30} peak {peak:7.0f} MiB  {seconds:7.1f} s")
    total = time.perf_counter() - start
    disk = sum(p.stat().st_size for p in work_dir.rglob("*") if p.is_file())
    record = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "files": files, "train_jets": train_jets(cfg.output_root), "disk_mib": round(disk / MIB),
        "total_seconds": round(total, 1), "config_overrides": overrides,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "stages": records,
    }
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return record


def stage_peaks(record: Mapping[str, Any]) -> dict[str, float]:
    """Peak RSS (MiB) of each DAG stage of one size's record (the startup floor left out)."""
    return {r["stage"]: r["peak_rss_mib"] for r in record["stages"] if r["stage"] != STARTUP}


def load_rows(block: Mapping[str, Any], row_type: Callable[..., Any]) -> list[Any]:
    """One row per size (its largest stage peak, every stage in the detail) and the ratio row over sizes."""
    sizes = sorted(block["sizes"].items(), key=lambda item: int(item[0]))
    rows = []
    peaks = {}
    for key, record in sizes:
        stages = stage_peaks(record)
        worst = max(stages, key=stages.get)
        peaks[int(key)] = stages[worst]
        floor = next((r["peak_rss_mib"] for r in record["stages"] if r["stage"] == STARTUP), None)
        detail = "; ".join(f"{r['stage']} {r['peak_rss_mib']:.0f} MiB {r['seconds']:.0f} s" for r in record["stages"])
        detail += (f"; largest: {worst}; {record['files']} ROOT files, train split {record['train_jets'].get('train', 0):,} "
                   f"jets, {record['disk_mib']:,} MiB on disk; measured {record['date']}")
        rows.append(row_type(f"{ROW_PREFIX}, {int(key):,} jets", int(key), stages[worst], "MiB", STARTUP,
                             floor, None, "info", None, record["total_seconds"], detail))
    if len(peaks) >= 2:
        high, low = max(peaks.values()), min(peaks.values())
        ratio = high / low
        detail = ", ".join(f"{n:,} jets: {p:.0f} MiB" for n, p in peaks.items())
        rows.append(row_type(f"{ROW_PREFIX} over sizes", max(peaks), high, "MiB", "smallest size's peak (MiB)", low,
                             ratio, f"max/min <= {GOAL}", ratio <= GOAL, None,
                             f"largest stage peak per size: {detail}"))
    return rows


def merge_block(old: Mapping[str, Any] | None, measured: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``load`` block with ``measured`` sizes replacing earlier ones of the same sizes."""
    sizes = dict((old or {}).get("sizes", {}))
    sizes.update({str(n): record for n, record in measured.items()})
    return {"stages": [STARTUP, *STAGES], "goal": f"max/min <= {GOAL}", "sizes": sizes}


def merge_results(path: Path, measured: Mapping[int, Mapping[str, Any]], row_type: Callable[..., Any],
                  earlier: Mapping[str, Any] | None = None) -> list[Any]:
    """Merge ``measured`` into the results file's ``load`` block (or into ``earlier``, a block read before
    the file was rewritten) and replace its load rows; return those rows."""
    from dataclasses import asdict

    import run

    payload = json.loads(path.read_text()) if path.exists() else {"machine": run.machine(), "rows": []}
    block = merge_block(earlier if earlier is not None else payload.get("load"), measured)
    rows = load_rows(block, row_type)
    payload["load"] = block
    payload["rows"] = [r for r in payload["rows"] if not r["stage"].startswith(ROW_PREFIX)] + [asdict(r) for r in rows]
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return rows


def bench_load(sizes: Iterable[int], keep: bool = False) -> dict[int, dict[str, Any]]:
    """Measure every size in turn; return ``{N: record}``."""
    measured = {}
    for n_jets in sizes:
        print(f"load: {n_jets:,} jets", flush=True)
        measured[n_jets] = bench_size(n_jets, keep=keep, echo=lambda line: print(line, flush=True))
    return measured


def main(argv: list[str] | None = None) -> int:
    """Measure the sizes asked for, print the rows and merge them into the results file."""
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, nargs="+", default=list(SIZES),
                        help=f"total jet counts to measure (default {' '.join(map(str, SIZES))})")
    parser.add_argument("--keep", action="store_true", help="keep benchmarks/work/load_N after measuring")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the results JSON to update")
    args = parser.parse_args(argv)
    rows = merge_results(args.output, bench_load(args.jets, keep=args.keep), run.Row)
    print()
    run.print_table(rows)
    print(f"\nupdated {args.output}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "--launch" and sys.argv[4] == "--":
        sys.exit(launch(sys.argv[5:], sys.argv[2], sys.argv[3]))
    sys.path.insert(0, str(HERE))
    sys.exit(main())
