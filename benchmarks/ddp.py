"""Benchmark rows of distributed training (``train.distributed``): TrainFold[0] at world size 1 and 2 on one machine.

:func:`bench_ddp` runs after the training rows of ``benchmarks/run.py``, on the same train file
(``train_sample/train.h5`` below the config's output root), with the config's ``train`` block as
loaded (model, batch size, optimizer, scheduler) but ``epochs`` = 2, no early stopping, no
continuation, ``device: cpu`` and ``train.distributed`` = ``{world_size: N, backend: gloo}``: it
calls ``train_fold`` for fold 0 at N = 1 (one process, as without the block) and N = 2 (two
processes spawned by it, each with ``usable cores // 2`` torch threads and batches of
``batch_size / 2`` jets). A row's throughput is the jets trained per epoch (N = 2: both ranks'
shares together) over the faster epoch's wall time as rank 0 logged it (``epochs.timings.csv``:
the training pass, the validation pass on fold 0 and the checkpoint); the detail gives both
epochs, the whole call's wall time (N = 2: with the processes' start, imports and rendezvous),
the cores and threads, the validation losses of both runs and the machine's load average before
and after (other processes sharing the cores make the numbers slower). Benchmarks report, they do not
gate: on 2 cores world size 2 has no cores to gain, and its row shows what it costs there.

Run ``python benchmarks/ddp.py [--jets N]`` to measure these rows alone on the work directory a
previous ``benchmarks/run.py --jets N`` left behind; they replace the ``DDP`` rows of
``benchmarks/results.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import torch

from tracerflow.config.load import Config
from tracerflow.training.data import TrainFileDataset
from tracerflow.training.fold import train_fold

from training import n_folds_of, train_path_of, training_folds

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
ROW_PREFIX = "DDP TrainFold"
VAL_FOLD = 0
EPOCHS = 2
WORLD_SIZES = (1, 2)

R = TypeVar("R")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def train_block(train: Mapping[str, Any], world_size: int) -> dict[str, Any]:
    """The config's train block, run for EPOCHS epochs on the CPU by ``world_size`` processes."""
    return {**train, "epochs": EPOCHS, "early_stopping": None, "continue_training": False, "device": "cpu",
            "distributed": {**train["distributed"], "world_size": world_size, "backend": "gloo"}}


def measure(cfg: Config, path: Path, world_size: int, out_dir: Path) -> dict[str, Any]:
    """TrainFold[0] at ``world_size`` in ``out_dir`` (emptied first): epoch times, the call's wall
    time, jets trained per epoch and the validation loss of each epoch."""
    shutil.rmtree(out_dir, ignore_errors=True)
    n_train = TrainFileDataset(path, training_folds(path), shuffle=False).n_rows
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = train_fold(path, VAL_FOLD, n_folds_of(path), train_block(cfg["train"], world_size), out_dir,
                        seed=cfg.seed)
    seconds = time.perf_counter() - start
    with open(out_dir / "epochs.timings.csv", newline="") as f:
        epoch_seconds = [float(r["time"]) for r in csv.DictReader(f)]
    return {"world_size": world_size, "seconds": seconds, "epoch_seconds": epoch_seconds,
            "jets_per_epoch": n_train // world_size * world_size, "val_loss": result.history.val_loss,
            "load": (load_before, os.getloadavg()[0])}


def rows_of(measured: list[dict[str, Any]], batch_size: int, cores: int, row_type: Callable[..., R]) -> list[R]:
    """One row per world size; world size 2 against world size 1."""
    rows = []
    base = None
    for m in measured:
        best = min(m["epoch_seconds"])
        rate = m["jets_per_epoch"] / best
        world = m["world_size"]
        threads = torch.get_num_threads() if world == 1 else max(1, cores // world)
        detail = (f"train_fold of fold {VAL_FOLD}, the config's train block, {EPOCHS} epochs, CPU, gloo; "
                  f"{cores} usable cores, {world} process(es) x {threads} torch thread(s); global batch "
                  f"{batch_size} = {world} x {batch_size // world}; {m['jets_per_epoch']:,} jets trained per epoch; "
                  f"epochs {', '.join(f'{t:.1f}' for t in m['epoch_seconds'])} s (training, validation, checkpoint); "
                  f"the call {m['seconds']:.1f} s" + (" with the processes' start" if world > 1 else "")
                  + f"; val loss by epoch {', '.join(f'{v:.4f}' for v in m['val_loss'])}; 1-minute load average "
                  f"{m['load'][0]:.1f} before, {m['load'][1]:.1f} after (above {cores}: other processes shared the cores)")
        if base is None:
            base = rate
            rows.append(row_type(f"{ROW_PREFIX}, world_size {world}", m["jets_per_epoch"], rate, "jets/s", None, None,
                                 None, "info", None, best, detail))
        else:
            rows.append(row_type(f"{ROW_PREFIX}, world_size {world}", m["jets_per_epoch"], rate, "jets/s",
                                 f"{ROW_PREFIX}, world_size 1", base, rate / base, "info", None, best, detail))
    return rows


def bench_ddp(cfg: Config, work_dir: Path, row_type: Callable[..., R]) -> list[R]:
    """Training throughput of TrainFold[0] at each of WORLD_SIZES on this machine."""
    if cfg["train"] is None:
        print("  no train block in the config: no DDP rows", flush=True)
        return []
    path = train_path_of(cfg)
    if not path.exists():
        raise FileNotFoundError(f"{path}: run the preprocessing rows first")
    measured = []
    for world in WORLD_SIZES:
        measured.append(measure(cfg, path, world, work_dir / "ddp" / f"world_size_{world}"))
        print(f"  DDP world_size {world}: epochs {measured[-1]['epoch_seconds']} s", flush=True)
    return rows_of(measured, cfg["train"]["batch_size"], usable_cores(), row_type)


def merge_results(path: Path, rows: list[Any]) -> None:
    """Replace the DDP rows of the results file with ``rows`` (other rows stay as they are)."""
    payload = json.loads(path.read_text())
    payload["rows"] = [r for r in payload["rows"] if not r["stage"].startswith(ROW_PREFIX)] + [asdict(r) for r in rows]
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """The DDP rows alone, on the work directory of an earlier ``run.py --jets N``; merged into the results."""
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=run.DEFAULT_JETS, help="the --jets of the earlier run")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the results JSON to update")
    args = parser.parse_args(argv)
    work_dir = run.WORK / f"jets_{args.jets}"
    cfg = run.load_config(None, run.sample_overrides(args.jets, work_dir))
    rows = bench_ddp(cfg, work_dir, run.Row)
    merge_results(args.output, rows)
    print()
    run.print_table(rows)
    print(f"\nupdated {args.output}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
