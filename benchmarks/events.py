"""Benchmark rows of the event-level toy analysis (``configs/toy-events.yaml``, at its shipped size).

The analysis runs end to end with ``tracerflow run --config toy-events`` (its output directory
moved below ``benchmarks/work/toy-events/``): Z'-like against ttbar-like events labelled by
sample, cross-section weights, a transformer over each event's jets, 3 fold models. Then:

- Quality: the model's AUC (Z' vs ttbar) and ttbar rejection at 50% Z' efficiency as Predict's
  ``metrics.json`` has them, on the test split (the 3-model fold ensemble) and out of fold (the
  train split), against the configured reference (``predict.reference``: the exact Bayes-optimal
  event log-likelihood ratio ``llr_zprime``) on the same events; ratio = model / reference.
- Predict throughput: Predict's scoring calls with the run's fold models (``out_of_fold`` of the
  train split, ``fold_ensemble`` of every other split), events scored per second; loading the
  models, metrics, plots and files are timed apart, training is not part of it.

Run ``python benchmarks/events.py [--quick]`` to measure these rows alone: they replace the rows of
the same names in ``benchmarks/results.json`` (or the ``--output`` file) and leave the others as
they are; ``benchmarks/run.py`` runs them after its own rows.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from tracerflow.config.load import Config, load_config
from tracerflow.evaluate.metrics import NullMetricWarning
from tracerflow.evaluate.predict import collect_metrics, fold_ensemble, out_of_fold, settings_from_config
from tracerflow.io.model_file import load_model

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "toy-events"
RESULTS = HERE / "results.json"
CONFIG = "toy-events"
AUC_GOAL = 0.995
EFFICIENCY = 50
PREDICT_REPEATS = 3
QUICK_FRACTION = 10
QUICK_EPOCHS = 2
ROW_PREFIX = "toy-events"

R = TypeVar("R")


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call (perf_counter) and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def overrides_for(work_dir: Path, quick: bool) -> list[str]:
    """``--set`` overrides: the output directory, and for ``quick`` a tenth of the events and 2 epochs."""
    out = [f"project.output_dir={work_dir}"]
    if quick:
        shipped = load_config(CONFIG)
        for name, spec in shipped["samples"].items():
            if spec["generate"] is not None:
                out.append(f"samples.{name}.generate.n_jets={spec['generate']['n_jets'] // QUICK_FRACTION}")
        out.append(f"train.epochs={QUICK_EPOCHS}")
    return out


def run_analysis(work_dir: Path, overrides: Sequence[str]) -> float:
    """``tracerflow run --config toy-events`` from scratch in ``work_dir``; its wall time."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    command = [str(Path(sys.executable).with_name("tracerflow")), "run", "--config", CONFIG,
               *(arg for o in overrides for arg in ("--set", o))]
    seconds, done = timed(lambda: subprocess.run(command, cwd=work_dir, capture_output=True, text=True))
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return seconds


def analysis_paths(cfg: Config, overrides: Sequence[str]) -> tuple[dict[int, str], dict[str, str]]:
    """The fold model files and the splits' train files Predict reads, from the Predict task itself."""
    from tracerflow.tasks.predict import Predict

    needs = Predict(config=CONFIG, overrides=list(overrides)).requires()
    models = {k: task.output().path for k, task in needs["folds"].items()}
    splits = {s: task.output()["umami"].path for s, task in needs["samples"].items()}
    return {k: str(p) for k, p in models.items()}, {s: str(p) for s, p in splits.items()}


def score(cfg: Config, models: Mapping[int, Any], attrs: Mapping[int, Mapping[str, Any]],
          splits: Mapping[str, str]) -> tuple[dict[str, float], tuple, dict[str, tuple]]:
    """Predict's scoring calls: seconds per call, the out-of-fold result and the ensembles."""
    settings = settings_from_config(cfg)
    options = {"batch_size": cfg["train"]["batch_size"], "settings": settings, "model_attrs": attrs}
    losses = {k: float(a["best_loss"]) for k, a in attrs.items()}
    seconds: dict[str, float] = {}
    seconds["train"], oof = timed(lambda: out_of_fold(models, splits["train"], **options))
    ensembles = {}
    for split, path in splits.items():
        if split != "train":
            seconds[split], ensembles[split] = timed(lambda: fold_ensemble(
                models, losses, path, mode=cfg["predict"]["ensemble"], **options))
    return seconds, oof, ensembles


def predict_row(row_type: Callable[..., R], cfg: Config, overrides: Sequence[str]) -> tuple[R, dict[str, Any]]:
    """Events/s of Predict's scoring (best of :data:`PREDICT_REPEATS`); also the metrics it computes."""
    model_paths, splits = analysis_paths(cfg, overrides)
    load_seconds, loaded = timed(lambda: {k: load_model(p) for k, p in model_paths.items()})
    models = {k: m for k, (m, _) in loaded.items()}
    attrs = {k: a for k, (_, a) in loaded.items()}
    runs = [score(cfg, models, attrs, splits) for _ in range(PREDICT_REPEATS)]
    totals = [sum(s.values()) for s, _, _ in runs]
    best = int(np.argmin(totals))
    seconds, oof, ensembles = runs[best]
    with warnings.catch_warnings():  # the run's Predict reported its null metrics already
        warnings.simplefilter("ignore", NullMetricWarning)
        metrics_seconds, metrics = timed(lambda: collect_metrics(oof, ensembles, settings_from_config(cfg)))
    rows = {"train": len(oof[0]), **{s: len(p) for s, (p, _) in ensembles.items()}}
    events = sum(rows.values())
    level = metrics["row_level"]
    parts = ", ".join(f"{s} {rows[s]:,} {level} in {seconds[s]:.2f} s"
                      + (" (out of fold)" if s == "train" else f" ({len(models)}-model {cfg['predict']['ensemble']} "
                         "ensemble)") for s in rows)
    detail = (f"Predict's scoring of the {CONFIG} run: out_of_fold of the train split and fold_ensemble of the "
              f"others with its {len(models)} fold models ({cfg['train']['model']['set']['type']} set encoder over "
              f"up to {cfg['write']['tracks']['max_tracks']} jets per event), batch_size={cfg['train']['batch_size']}; "
              f"fastest of {PREDICT_REPEATS} ({', '.join(f'{t:.2f}' for t in totals)} s): {parts}; not timed: "
              f"loading the models {load_seconds:.2f} s, metrics {metrics_seconds:.2f} s; CPU, torch "
              f"{torch.__version__} with {torch.get_num_threads()} threads")
    total = sum(seconds.values())
    row = row_type(f"Predict ({CONFIG}): out of fold + ensembles", events, events / total, f"{level}/s", None,
                   None, None, "info", None, total, detail)
    return row, metrics


def _number(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def quality_rows(row_type: Callable[..., R], metrics: Mapping[str, Any], run_text: str, quick: bool) -> list[R]:
    """AUC and rejection at :data:`EFFICIENCY`% of the positive class, test split and out of fold,
    against ``predict.reference`` on the same events."""
    classes, positive = metrics["classes"], metrics["positive"]
    other = next(c for c in classes if c != positive)
    reference = metrics["reference"]
    auc_key, rej_key = f"auc_{classes[0]}_vs_{classes[1]}", f"{other}_rejection_{EFFICIENCY}"
    level = metrics["row_level"]
    blocks = {"test": metrics["ensembles"]["test"], "out of fold": metrics["out_of_fold"]["all"]}

    def text(key: str) -> str:
        parts = []
        for where, block in blocks.items():
            model, ref = block["model"][key], block["reference"][key]
            ratio = _ratio(model, ref)
            reasons = [block["null_reasons"].get(f"{part}.{key}") for part in ("model", "reference")]
            why = "; ".join(f"{part}: {r}" for part, r in zip(("model", reference["name"]), reasons) if r)
            counts = ", ".join(f"{c['rows']:,} {name}" for name, c in block["classes"].items())
            parts.append(f"{where} ({counts} {level}): model {_number(model)}, {reference['name']} "
                         f"{_number(ref)}, ratio {_number(ratio)}" + (f" (null: {why})" if why else ""))
        return "; ".join(parts)

    test = blocks["test"]
    auc, auc_ref = test["model"][auc_key], test["reference"][auc_key]
    rej, rej_ref = test["model"][rej_key], test["reference"][rej_key]
    auc_ratio, rej_ratio = _ratio(auc, auc_ref), _ratio(rej, rej_ref)
    anchor = f"{reference['name']}: predict.reference {reference['score']} on the same {level}"
    smoke = " (n/a: --quick smoke run)" if quick else ""
    detail_auc = f"{text(auc_key)}; {run_text}"
    detail_rej = (f"{other} rejection (1 / weighted {other} efficiency, cross-section weights) at {EFFICIENCY}% "
                  f"{positive} efficiency: {text(rej_key)}; {run_text}")
    return [
        row_type(f"Quality ({CONFIG}): AUC {positive} vs {other}", test["rows"], auc, "AUC", anchor, auc_ref,
                 auc_ratio, f">= {AUC_GOAL:g} x reference{smoke}",
                 None if quick or auc_ratio is None else auc_ratio >= AUC_GOAL, None, detail_auc),
        row_type(f"Quality ({CONFIG}): {other} rejection at {EFFICIENCY}% {positive} eff", test["rows"], rej,
                 f"1/eff_{other}", anchor, rej_ref, rej_ratio, "info", None, None, detail_rej),
    ]


def bench_events(row_type: Callable[..., R], work_dir: Path = WORK, quick: bool = False) -> tuple[list[R], dict]:
    """Run the event-level analysis and return its rows and what was run (config, overrides, seconds)."""
    overrides = overrides_for(work_dir, quick)
    run_seconds = run_analysis(work_dir, overrides)
    print(f"  tracerflow run --config {CONFIG} {run_seconds:.1f} s", flush=True)
    cfg = load_config(CONFIG, overrides)
    predict, metrics = predict_row(row_type, cfg, overrides)
    print(f"  Predict ({CONFIG}) {predict.seconds:.2f} s", flush=True)
    stored = json.loads((cfg.output_root / "predict" / "metrics.json").read_text())
    samples = {n: s["generate"]["n_jets"] for n, s in cfg["samples"].items() if s["generate"]}
    run_text = (f"metrics.json of `tracerflow run --config {CONFIG}` ({', '.join(f'{n} {j:,} jets' for n, j in samples.items())}, "
                f"{cfg['write']['n_folds']} folds, {cfg['train']['epochs']} epochs, whole DAG {run_seconds:.0f} s with "
                f"--workers 1); {cfg.output_root / 'predict' / 'report.html'}")
    key = f"auc_{stored['classes'][0]}_vs_{stored['classes'][1]}"
    ours, theirs = metrics["out_of_fold"]["all"]["model"][key], stored["out_of_fold"]["all"]["model"][key]
    predict.detail += (f"; out-of-fold AUC of this scoring {_number(ours, '.6f')} (the run's Predict: "
                       f"{_number(theirs, '.6f')})")
    rows = [*quality_rows(row_type, stored, run_text, quick), predict]
    return rows, {"config": CONFIG, "config_overrides": overrides, "total_seconds": round(run_seconds, 1)}


def merge_results(path: Path, rows: list[Any], meta: Mapping[str, Any]) -> None:
    """Replace the rows of these stages in the results file (others kept, new ones appended) and record
    the run under ``event_level``; a missing file is started with this machine's description."""
    from dataclasses import asdict

    import run

    payload = json.loads(path.read_text()) if path.exists() else {"machine": run.machine(), "rows": []}
    new = [asdict(r) for r in rows]
    names = {r["stage"] for r in new}
    kept = [r for r in payload["rows"] if r["stage"] not in names]
    payload["rows"] = kept + new
    payload["event_level"] = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), **meta}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """These rows alone: print them and merge them into the results file."""
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 1/{QUICK_FRACTION} of the events, {QUICK_EPOCHS} epochs")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the results JSON to update")
    args = parser.parse_args(argv)
    rows, meta = bench_events(run.Row, quick=args.quick)
    print()
    run.print_table(rows)
    merge_results(args.output, rows, meta)
    print(f"\nupdated {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
