"""Benchmark rows of training and prediction, on the umami train file the preprocessing rows wrote.

:func:`bench_training` runs after ``benchmarks/preprocessing.py`` in the same benchmark run, on
the same jets (``train_sample/train.h5``), with fold 0 held out as TrainFold[0] holds it out:

- Training throughput of an MLP (the config's ``train.model`` without its ``set`` block: head,
  body and tail on the jet inputs) in jets/s: tracerflow's ``Fitter`` fed by
  ``TrainFileDataset``, against a hand-written loop over ``torch.utils.data.DataLoader`` of a
  ``TensorDataset`` of the same arrays (same model, initial weights, batch size and optimizer),
  and against LUMIN's ``Model.fit`` with the same layer widths. LUMIN pins numpy<2, so it lives
  in its own virtualenv (``benchmarks/.lumin-venv``, ``make lumin``) and runs as a subprocess of
  a driver script written next to its inputs; without that venv its row says "n/a".
- GNN training throughput in graphs/s (one graph per jet, its tracks as nodes): the config's
  model with ``set: {type: gnn}``, forward + backward + optimizer step over a fixed number of
  batches.
- The config's default model (``train`` block as loaded, so new defaults are picked up):
  TrainFold[0] with ``train_fold``; the held-out split (``test``, written here with
  ``write_train_sample`` and the train split's scale dict) predicted with ``fold_ensemble`` and
  fold 0 with ``out_of_fold`` (jets/s); then AUC (b vs light) and light rejection at 77% b
  efficiency of that prediction against the Bayes-optimal discriminant (the toy's exact
  ``llr_bl``) on the same jets, computed as Predict computes them.

Run ``python benchmarks/training.py [--jets N]`` to measure these rows alone on the work
directory a previous ``benchmarks/run.py --jets N`` left behind.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from tracerflow.config.load import Config
from tracerflow.evaluate.predict import (
    Figure,
    PredictSettings,
    evaluate_rows,
    fold_ensemble,
    out_of_fold,
    settings_from_config,
    write_predict_outputs,
)
from tracerflow.evaluate.report import summed_cutflow, with_samples, write_report
from tracerflow.models import ModelBuilder
from tracerflow.seeding import derive_seed
from tracerflow.training.data import TrainFileDataset
from tracerflow.training.fit import Fitter
from tracerflow.training.fold import model_builder, train_fold
from tracerflow.training.optim import make_optimizer
from tracerflow.write.scaling import read_embedded_scale_dict
from tracerflow.write.train_sample import train_columns, write_train_sample

from anchor_venv import interpreter, runs_in
from preprocessing import CachedFile, RowLike, run_resample, write_split

HERE = Path(__file__).resolve().parent
CREATED_BY = "benchmarks/training.py"
TRAIN_SPLIT = "train"
HELD_OUT_SPLITS = ("test", "val")
VAL_FOLD = 0
MLP_EPOCHS = 3
GNN_WARMUP_BATCHES = 3
GNN_BATCHES = 60
GNN_REPEATS = 3
GNN_K = 3
GNN_EDGE_COORDINATES = ("deta", "dphi")
MLP_GOAL = 1.0
GNN_GOAL = 30_000.0
AUC_GOAL = 0.95
REJECTION_GOAL = 0.8
WORKING_POINT = 77
SIGNAL, LIGHT = "bjets", "ujets"
LUMIN_VENV = HERE / ".lumin-venv"
LUMIN_INSTALL_COMMAND = "make lumin"
LUMIN_OPTIMIZERS = {"ADAM": "adam", "ADAMW": "adamw", "SGD": "sgd"}
LUMIN_TIMEOUT = 1800

R = TypeVar("R", bound=RowLike)

LUMIN_DRIVER = '''\
"""Train LUMIN's MLP on the jets of a .npz for some epochs and print the epoch times as JSON."""
import importlib.metadata as metadata
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lumin.data_processing.file_proc import df2foldfile
from lumin.nn.callbacks.callback import Callback
from lumin.nn.data.fold_yielder import FoldYielder
from lumin.nn.models.model import Model
from lumin.nn.models.model_builder import ModelBuilder


class EpochTimer(Callback):
    """Wall time of every training epoch (LUMIN calls on_epoch_* around each training pass)."""

    def __init__(self):
        super().__init__()
        self.start, self.seconds = 0.0, []

    def on_epoch_begin(self):
        self.start = time.perf_counter()

    def on_epoch_end(self):
        self.seconds.append(time.perf_counter() - self.start)


args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
run_dir = Path(args["run_dir"])
data = np.load(run_dir / "jets.npz")
df = pd.DataFrame(data["x"], columns=args["features"])
df["gen_target"], df["gen_weight"] = data["y"], data["w"]
fold_path = run_dir / "jets_folds.hdf5"
df2foldfile(df, args["n_folds"], args["features"], [], "gen_target", fold_path.with_suffix(""), "int",
            shuffle=False, wgt_feat="gen_weight")
fy = FoldYielder(fold_path)
builder = ModelBuilder("multiclass", args["n_out"], cont_feats=args["features"], model_args={"body": args["body"]},
                       opt_args=args["opt"])
model = Model(builder)
timer = EpochTimer()
start = time.perf_counter()
model.fit(args["epochs"], fy, args["batch_size"], trn_idxs=list(range(args["n_folds"])), val_idx=None,
          cbs=[timer], cb_savepath=run_dir / "weights", visible_bar=False)
total = time.perf_counter() - start
counts = [fy.get_data_count(k) for k in range(args["n_folds"])]
trained = sum(n // args["batch_size"] * args["batch_size"] for n in counts)
print(json.dumps({"epoch_seconds": timer.seconds, "fit_seconds": total, "jets_per_epoch": trained,
                  "jets": int(sum(counts)), "lumin": metadata.version("lumin"), "numpy": np.__version__,
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "parameters": model.get_param_count()}))
'''


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call (perf_counter) and its result."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def train_path_of(cfg: Config) -> Path:
    """The umami train file of the train split, as the preprocessing rows write it."""
    return cfg.output_root / "train_sample" / f"{TRAIN_SPLIT}.h5"


def n_folds_of(path: Path) -> int:
    """Folds recorded in a umami train file."""
    with h5py.File(path, "r") as f:
        return int(f.attrs["n_folds"])


def training_folds(path: Path) -> list[int]:
    """Every fold but :data:`VAL_FOLD`: what TrainFold[0] trains on."""
    return [k for k in range(n_folds_of(path)) if k != VAL_FOLD]


def mlp_block(cfg: Config) -> dict[str, Any]:
    """The config's ``train.model`` without its set encoder: an MLP on the jet inputs."""
    return {k: v for k, v in cfg["train"]["model"].items() if k != "set"}


def gnn_block(cfg: Config, path: Path) -> dict[str, Any]:
    """The config's ``train.model`` with the message-passing set encoder: the config's own if it is
    one, else hidden 64, two rounds, edges from each track's ``GNN_K`` nearest tracks in (deta, dphi)."""
    model = dict(cfg["train"]["model"])
    own = model.get("set")
    if isinstance(own, Mapping) and own.get("type") == "gnn":
        model["set"] = dict(own)
        return model
    with h5py.File(path, "r") as f:
        names = json.loads(f["tracks/inputs"].attrs["variables"])
    model["set"] = {"type": "gnn", "hidden": 64, "n_layers": 2, "k": GNN_K,
                    "edge_columns": [names.index(v) for v in GNN_EDGE_COORDINATES]}
    return model


def build(cfg: Config, block: Mapping[str, Any], path: Path) -> tuple[torch.nn.Module, ModelBuilder]:
    """The model of ``block`` sized from the train file, with TrainFold[0]'s initial weights."""
    builder, _ = model_builder({"model": block}, path)
    return builder.build(seed=derive_seed(cfg.seed, "model", VAL_FOLD)), builder


def optimizer_for(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over ``model``'s parameters."""
    train = cfg["train"]
    return make_optimizer(train["optimizer"], model.parameters(), train["optimizer_params"])


def layer_text(block: Mapping[str, Any]) -> str:
    """The layers of a model block, for the row details."""
    parts = [f"body {dict(block.get('body') or {})}"]
    if block.get("set"):
        parts.append(f"set {dict(block['set'])}")
    return ", ".join(parts)


def ours_mlp_epochs(cfg: Config, path: Path, epochs: int) -> tuple[list[float], int]:
    """Fitter.train_epoch over TrainFileDataset (jets only) for ``epochs`` epochs: seconds each, jets per epoch."""
    model, _ = build(cfg, mlp_block(cfg), path)
    train = cfg["train"]
    data = TrainFileDataset(path, training_folds(path), batch_size=train["batch_size"], shuffle=True,
                            seed=derive_seed(cfg.seed, "batches", VAL_FOLD), with_tracks=False)
    fitter = Fitter(model, optimizer=optimizer_for(cfg, model), device="cpu")
    seconds = []
    for epoch in range(epochs):
        data.set_epoch(epoch)
        seconds.append(timed(lambda: fitter.train_epoch(data))[0])
    return seconds, data.n_rows


def jet_arrays(path: Path, folds: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jet inputs (float32), labels and weights of the jets of ``folds``, in memory."""
    with h5py.File(path, "r") as f:
        keep = np.isin(f["jets/fold"][:], folds)
        return (f["jets/inputs"][:][keep].astype(np.float32), f["jets/labels"][:][keep].astype(np.int64),
                f["jets/weight"][:][keep].astype(np.float32))


def plain_mlp_epochs(cfg: Config, x: np.ndarray, y: np.ndarray, w: np.ndarray, path: Path,
                     epochs: int) -> list[float]:
    """A hand-written loop over ``DataLoader(TensorDataset(...), shuffle=True)``: seconds of each epoch.

    Same model and initial weights, batch size, optimizer and weighted cross-entropy as the Fitter.
    """
    model, _ = build(cfg, mlp_block(cfg), path)
    optimizer = optimizer_for(cfg, model)
    generator = torch.Generator().manual_seed(derive_seed(cfg.seed, "plain", VAL_FOLD))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)),
                        batch_size=cfg["train"]["batch_size"], shuffle=True, generator=generator)

    def epoch() -> None:
        model.train()
        for xb, yb, wb in loader:
            optimizer.zero_grad(set_to_none=True)
            losses = torch.nn.functional.cross_entropy(model(xb), yb, reduction="none")
            loss = (wb * losses).sum() / wb.sum()
            loss.backward()
            optimizer.step()

    return [timed(epoch)[0] for _ in range(epochs)]


def lumin_python(venv: Path = LUMIN_VENV) -> Path:
    """The interpreter of the LUMIN virtualenv."""
    return interpreter(venv)


def lumin_available(venv: Path = LUMIN_VENV) -> bool:
    """Whether ``lumin`` imports in its venv (it needs numpy<2 and pdpbox, so the probe imports it)."""
    return runs_in(venv, "from lumin.nn.models.model import Model", timeout=300)


def lumin_body(block: Mapping[str, Any]) -> dict[str, Any] | str:
    """LUMIN's FullyConnected arguments for the config's body, or why they cannot express it."""
    body = dict(block.get("body") or {})
    widths = [int(v) for v in body.get("widths", (100, 100))]
    if not widths or len(set(widths)) != 1:
        return f"n/a: LUMIN's FullyConnected has one width for every layer, the config has {widths}"
    if body.get("norm") == "layer":
        return "n/a: LUMIN's FullyConnected has no layer norm"
    if block.get("head", {}).get("cat_cardinalities"):
        return "n/a: the LUMIN harness passes continuous jet inputs only"
    return {"width": widths[0], "depth": len(widths), "act": body.get("activation", "relu"),
            "bn": body.get("norm") == "batch", "do": float(body.get("dropout", 0.0))}


def run_lumin(cfg: Config, x: np.ndarray, y: np.ndarray, w: np.ndarray, path: Path, run_dir: Path,
              epochs: int) -> dict[str, Any] | str:
    """LUMIN's ``Model.fit`` on the same jets in its own venv: the driver's JSON, or an "n/a" reason."""
    if not lumin_available():
        return f"n/a: LUMIN not installed; run `{LUMIN_INSTALL_COMMAND}`"
    body = lumin_body(mlp_block(cfg))
    if isinstance(body, str):
        return body
    train = cfg["train"]
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / "jets.npz", x=x, y=y, w=w)
    with h5py.File(path, "r") as f:
        features = json.loads(f.attrs["jet_variables"])
        n_out = len(json.loads(f.attrs["class_names"]))
    args = {"run_dir": str(run_dir), "features": features, "n_out": n_out, "body": body,
            "opt": {"opt": LUMIN_OPTIMIZERS[train["optimizer"].upper()], **train["optimizer_params"]},
            "batch_size": train["batch_size"], "epochs": epochs, "n_folds": len(training_folds(path)),
            "threads": torch.get_num_threads()}
    driver = run_dir / "lumin_driver.py"
    driver.write_text(LUMIN_DRIVER)
    start = time.perf_counter()
    try:
        done = subprocess.run([str(lumin_python()), str(driver), json.dumps(args)], capture_output=True,
                              text=True, timeout=LUMIN_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as err:
        return f"n/a: LUMIN failed: {err}"
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        return f"n/a: LUMIN failed ({done.returncode}): {tail[0]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["subprocess_seconds"] = time.perf_counter() - start
    return result


def epochs_text(seconds: Sequence[float], jets: int) -> str:
    """Epoch times and rates, e.g. ``epochs 3.10, 2.95 s (176,000, 185,000 jets/s)``."""
    times = ", ".join(f"{s:.2f}" for s in seconds)
    rates = ", ".join(f"{jets / s:,.0f}" for s in seconds)
    return f"epochs {times} s ({rates} jets/s)"


def mlp_rows(row_type: Callable[..., R], cfg: Config, path: Path, work_dir: Path,
             epochs: int = MLP_EPOCHS) -> list[R]:
    """Training throughput of the MLP: ours against a plain DataLoader loop and against LUMIN."""
    train = cfg["train"]
    ours, n_jets = ours_mlp_epochs(cfg, path, epochs)
    print(f"  MLP ours {sum(ours):.1f} s", flush=True)
    load_seconds, (x, y, w) = timed(lambda: jet_arrays(path, training_folds(path)))
    plain = plain_mlp_epochs(cfg, x, y, w, path, epochs)
    print(f"  MLP plain DataLoader {sum(plain):.1f} s", flush=True)
    lumin = run_lumin(cfg, x, y, w, path, work_dir / "lumin", epochs)
    print(f"  MLP LUMIN {lumin['fit_seconds']:.1f} s" if isinstance(lumin, dict) else f"  MLP LUMIN: {lumin}",
          flush=True)
    block = mlp_block(cfg)
    model, builder = build(cfg, block, path)
    best = min(ours)
    throughput = n_jets / best
    common = (f"{n_jets:,} jets (folds {training_folds(path)}; fold {VAL_FOLD} held out as by "
              f"TrainFold[{VAL_FOLD}]), {x.shape[1]} jet inputs, {layer_text(builder.resolved_config)}, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters, "
              f"batch_size={train['batch_size']}, {train['optimizer']} {dict(train['optimizer_params'])}, "
              f"torch {torch.__version__} with {torch.get_num_threads()} threads; best of {epochs} epochs, "
              f"training pass only (forward, backward, step; no validation)")
    ours_text = (f"ours: Fitter.train_epoch over TrainFileDataset(with_tracks=False, shuffle=True) read from "
                 f"the train file, {epochs_text(ours, n_jets)}")
    plain_rate = len(y) / min(plain)
    plain_ratio = throughput / plain_rate
    plain_text = (f"plain: DataLoader(TensorDataset(x, y, w), batch_size={train['batch_size']}, shuffle=True) "
                  f"over the same jets in memory (read and converted to float32 in {load_seconds:.2f} s, "
                  f"not timed), hand-written weighted cross-entropy loop, {epochs_text(plain, len(y))}")
    rows = [row_type("Train MLP vs plain DataLoader", n_jets, throughput, "jets/s",
                     "hand-written loop over torch DataLoader(TensorDataset), same model, same jets, this run",
                     plain_rate, plain_ratio, f">= {MLP_GOAL:g} x plain", plain_ratio >= MLP_GOAL, best,
                     f"{common}; {ours_text}; {plain_text}")]
    if isinstance(lumin, str):
        rows.append(row_type("Train MLP vs LUMIN", n_jets, throughput, "jets/s", "LUMIN Model.fit (not measured)",
                             None, None, f">= {MLP_GOAL:g} x LUMIN (n/a)", None, best,
                             f"{lumin}; {common}; {ours_text}"))
        return rows
    lumin_rate = lumin["jets_per_epoch"] / min(lumin["epoch_seconds"])
    lumin_ratio = throughput / lumin_rate
    lumin_text = (f"LUMIN {lumin['lumin']} (numpy {lumin['numpy']}, torch {lumin['torch']}, {lumin['threads']} "
                  f"threads, own venv): Model.fit(bulk_move=True, val_idx=None) over a LUMIN fold file of the same "
                  f"jets in {len(training_folds(path))} folds (df2foldfile, not timed), FullyConnected "
                  f"{lumin_body(block)}, WeightedCCE, {lumin['parameters']:,} parameters, drop_last per fold: "
                  f"{lumin['jets_per_epoch']:,} jets/epoch, "
                  f"{epochs_text(lumin['epoch_seconds'], lumin['jets_per_epoch'])}; whole subprocess "
                  f"{lumin['subprocess_seconds']:.1f} s")
    rows.append(row_type("Train MLP vs LUMIN", n_jets, throughput, "jets/s",
                         f"LUMIN {lumin['lumin']} Model.fit, same widths, same jets, this run", lumin_rate,
                         lumin_ratio, f">= {MLP_GOAL:g} x LUMIN", lumin_ratio >= MLP_GOAL, best,
                         f"{common}; {ours_text}; {lumin_text}"))
    return rows


def gnn_row(row_type: Callable[..., R], cfg: Config, path: Path, n_batches: int = GNN_BATCHES,
            warmup: int = GNN_WARMUP_BATCHES) -> R:
    """GNN training throughput in graphs/s: Fitter.train_epoch over ``n_batches`` batches after ``warmup``."""
    train = cfg["train"]
    block = gnn_block(cfg, path)
    model, builder = build(cfg, block, path)
    data = TrainFileDataset(path, training_folds(path), batch_size=train["batch_size"], shuffle=True,
                            seed=derive_seed(cfg.seed, "batches", VAL_FOLD), sort_by_nodes=True)
    k = block["set"].get("k")
    fitter = Fitter(model, optimizer=optimizer_for(cfg, model), device="cpu")
    batches = iter(data)
    fitter.train_epoch(itertools.islice(batches, warmup))
    counted: list[tuple[int, int, int]] = []

    def counting(items: Iterable[dict[str, torch.Tensor]]) -> Iterable[dict[str, torch.Tensor]]:
        """Pass the batches on, noting the graphs, nodes and edges of each."""
        for batch in items:
            nodes = batch["valid"].sum(dim=1)
            fan_in = nodes - 1 if k is None else (nodes - 1).clamp(max=k)
            counted.append((int(nodes.shape[0]), int(nodes.sum()), int((nodes * fan_in).sum())))
            yield batch

    runs = []
    for _ in range(GNN_REPEATS):
        counted.clear()
        seconds, _ = timed(lambda: fitter.train_epoch(counting(itertools.islice(batches, n_batches))))
        runs.append((len(counted) and sum(c[0] for c in counted) / seconds, seconds, list(counted)))
    _, seconds, counted = max(runs, key=lambda r: r[0])
    graphs, nodes, edges = (sum(c[i] for c in counted) for i in range(3))
    sizes_text = ""
    if graphs:
        topology = "fully connected" if k is None else f"{k} nearest neighbours in (deta, dphi)"
        sizes_text = f", {nodes / graphs:.1f} nodes and {edges / graphs:.1f} edges per graph ({topology}, no self loops)"
    throughput = graphs / seconds
    print(f"  GNN {seconds:.1f} s", flush=True)
    detail = (f"fastest of {GNN_REPEATS} runs ({', '.join(f'{r[0]:,.0f}' for r in runs)} graphs/s) of "
              f"{len(counted)} batches of {train['batch_size']} after {warmup} warm-up batches, from the shuffled "
              f"training folds of TrainFold[{VAL_FOLD}]; Fitter.train_epoch (forward, backward, {train['optimizer']} "
              f"step) fed by TrainFileDataset with SortByNodes batches; one graph per jet, its valid tracks as nodes{sizes_text}; the config's "
              f"model with {layer_text(builder.resolved_config)}; "
              f"{sum(p.numel() for p in model.parameters()):,} parameters; torch {torch.__version__} with "
              f"{torch.get_num_threads()} threads")
    return row_type("Train GNN", graphs, throughput, "graphs/s", None, None, None, f">= {GNN_GOAL:,.0f} graphs/s",
                    throughput >= GNN_GOAL, seconds, detail)


def held_out_file(cfg: Config, files: Sequence[CachedFile], train_path: Path) -> tuple[str, Path, str] | None:
    """Write the first non-train split of ``HELD_OUT_SPLITS`` as Resample and WriteTrainSample would.

    The split is resampled (or left as is, as the config says for it) by Resample's library call
    and written with the train split's scale dict; returns (split, umami path, resample method
    used), or None when the config has no such split.
    """
    splits = [s for s in HELD_OUT_SPLITS if s in cfg["resample"]["splits"]]
    if not splits:
        return None
    split = splits[0]
    root = cfg.output_root
    method = cfg["resample"]["method"]
    result = run_resample(cfg, files, method)[split]
    used = method if result.resampled else "none"
    resampled_path = root / "resample" / f"{split}.h5"
    write_split(cfg, files, method, result, resampled_path)
    out_path = root / "train_sample" / f"{split}.h5"
    write_train_sample(resampled_path, train_columns(cfg), cfg["write"], seed=cfg.seed, umami_path=out_path,
                       folds_path=None, scale_dict=read_embedded_scale_dict(train_path), config_digest="benchmark",
                       created_by=CREATED_BY, attrs={"split": split})
    return split, out_path, used


def number_text(value: float | None, spec: str = ".4g") -> str:
    """A metric for a detail text; ``n/a`` for a null metric."""
    return "n/a" if value is None else format(value, spec)


def quality_ratio(value: float | None, reference: float | None, offset: float = 0.0) -> float | None:
    """``(value - offset) / (reference - offset)``, None when either is null or the reference is not above ``offset``."""
    if value is None or reference is None or not math.isfinite(reference) or reference <= offset:
        return None
    return (value - offset) / (reference - offset)


def quality_rows(row_type: Callable[..., R], model_metrics: Mapping[str, float | None],
                 bayes: Mapping[str, float | None], jets: int, where: str) -> list[R]:
    """AUC (b vs light) and light rejection at the working point, against the Bayes-optimal discriminant."""
    auc_key, rej_key = f"auc_{SIGNAL}_vs_{LIGHT}", f"{LIGHT}_rejection_{WORKING_POINT}"
    auc, auc_bayes = model_metrics[auc_key], bayes[auc_key]
    rej, rej_bayes = model_metrics[rej_key], bayes[rej_key]
    auc_ratio = quality_ratio(auc, auc_bayes, 0.5)
    rej_ratio = quality_ratio(rej, rej_bayes)
    others = ", ".join(f"{k} {number_text(v)} (Bayes {number_text(bayes[k])})" for k, v in model_metrics.items()
                       if k not in (auc_key, rej_key) and k in bayes)
    detail = f"{where}; other metrics: {others}"
    return [
        row_type("Quality: AUC b vs light", jets, auc, "AUC",
                 "Bayes-optimal llr_bl on the same jets", auc_bayes, auc_ratio,
                 f"(AUC-0.5) >= {AUC_GOAL:g} x Bayes'", None if auc_ratio is None else auc_ratio >= AUC_GOAL,
                 None, detail),
        row_type(f"Quality: light rejection at {WORKING_POINT}% b-eff", jets, rej, "1/eff_light",
                 "Bayes-optimal llr_bl on the same jets", rej_bayes, rej_ratio,
                 f">= {REJECTION_GOAL:g} x Bayes'", None if rej_ratio is None else rej_ratio >= REJECTION_GOAL,
                 None, detail),
    ]


def default_model_rows(row_type: Callable[..., R], cfg: Config, files: Sequence[CachedFile], path: Path) -> list[R]:
    """TrainFold[0] of the config's default model, predict throughput and quality against Bayes."""
    train, settings = cfg["train"], settings_from_config(cfg)
    n_folds = n_folds_of(path)
    out_dir = cfg.output_root / "train" / f"fold_{VAL_FOLD}"
    seconds, result = timed(lambda: train_fold(path, VAL_FOLD, n_folds, train, out_dir, seed=cfg.seed))
    with open(out_dir / "epochs.timings.csv") as f:
        epoch_seconds = [float(r["time"]) for r in csv.DictReader(f)]
    history = result.history
    n_train = TrainFileDataset(path, training_folds(path), shuffle=False).n_rows
    print(f"  TrainFold[{VAL_FOLD}] {seconds:.1f} s", flush=True)
    epochs = len(history.epochs)
    train_text = (f"train_fold(fold {VAL_FOLD} of {n_folds}) with the config's train block: "
                  f"{layer_text(result.model_config)}, {epochs} epoch(s) run of {train['epochs']} "
                  f"(best epoch {history.best_epoch}, best val loss {history.best_loss:.4f}), "
                  f"batch_size={train['batch_size']}, {train['optimizer']} {dict(train['optimizer_params'])}, "
                  f"scheduler {train['scheduler']}; {n_train:,} training jets, each epoch with validation on fold "
                  f"{VAL_FOLD}; epoch times " + ", ".join(f"{t:.1f}" for t in epoch_seconds) + " s")
    rows = [row_type("TrainFold (default model, fold 0)", n_train * epochs, n_train * epochs / seconds, "jets/s",
                     None, None, None, "info", None, seconds, train_text)]

    models = {VAL_FOLD: result.model}
    batch = train["batch_size"]
    options = {"batch_size": batch, "settings": settings, "model_attrs": {VAL_FOLD: result.attrs()}}
    oof_seconds, (order, oof_pred, oof_columns) = timed(lambda: out_of_fold(models, path, **options))
    oof_metrics = evaluate_rows(oof_pred, oof_columns, order, settings, f"fold {VAL_FOLD} out of fold")
    rows.append(row_type("Predict out_of_fold (default model)", len(order), len(order) / oof_seconds, "jets/s",
                         None, None, None, "info", None, oof_seconds,
                         f"out_of_fold of fold {VAL_FOLD} of the train file with its TrainFold model, "
                         f"batch_size={batch}, CPU, {torch.get_num_threads()} threads"))

    write_seconds, held_out = timed(lambda: held_out_file(cfg, files, path))
    if held_out is None:
        where = (f"fold {VAL_FOLD} of the train split, out of fold (the config has no "
                 f"{' or '.join(HELD_OUT_SPLITS)} split)")
        metrics, jets = oof_metrics, len(order)
    else:
        split, held_path, method = held_out
        mode = cfg["predict"]["ensemble"]
        ens_seconds, (pred, columns) = timed(lambda: fold_ensemble(models, {VAL_FOLD: float(history.best_loss)},
                                                                   held_path, mode=mode, **options))
        jets = len(pred)
        metrics = evaluate_rows(pred, columns, np.arange(jets), settings, f"split {split}")
        rows.append(row_type(f"Predict fold ensemble ({split})", jets, jets / ens_seconds, "jets/s", None, None, None,
                             "info", None, ens_seconds,
                             f"fold_ensemble(mode={mode}) of the {split} split with the fold-{VAL_FOLD} model only "
                             f"(k fold models cost about k times this), batch_size={batch}; {split} file written "
                             f"with write_train_sample in {write_seconds:.1f} s (not timed)"))
        oof_model, oof_bayes = oof_metrics["model"], oof_metrics.get("bayes_optimal", {})
        where = (f"{split} split ({jets:,} jets, resample method {method}, train split's scale dict) "
                 f"predicted by fold_ensemble of the fold-{VAL_FOLD} model only "
                 f"(TrainFold[{VAL_FOLD}], {epochs} epoch(s)); discriminant {settings.discriminant}; "
                 f"out of fold on fold {VAL_FOLD}: AUC "
                 f"{number_text(oof_model.get(f'auc_{SIGNAL}_vs_{LIGHT}'), '.4f')}, light rejection "
                 f"{number_text(oof_model.get(f'{LIGHT}_rejection_{WORKING_POINT}'), '.3g')} (Bayes "
                 f"{number_text(oof_bayes.get(f'auc_{SIGNAL}_vs_{LIGHT}'), '.4f')}, "
                 f"{number_text(oof_bayes.get(f'{LIGHT}_rejection_{WORKING_POINT}'), '.3g')})")
        report = write_quality_report(cfg, files, (order, oof_pred, oof_columns), {split: (pred, columns)},
                                      out_dir / "epochs.csv", settings)
        where += f"; report {report}"
    if "bayes_optimal" not in metrics:
        return rows
    rows += quality_rows(row_type, metrics["model"], metrics["bayes_optimal"], jets, where)
    return rows


def write_quality_report(cfg: Config, files: Sequence[CachedFile], oof: tuple, ensembles: Mapping[str, tuple],
                         epochs_csv: Path, settings: PredictSettings) -> Path:
    """Predict's metrics, plots and ``report.html`` for the benchmark's fold-0 model, in ``<work>/predict``."""
    out = cfg.output_root / "predict"
    plots = out / "plots"

    def report(metrics: dict[str, Any], figures: list[Figure]) -> None:
        write_report(out / "report.html", title=f"benchmark, {cfg['project']['name']}: default model, fold 0",
                     cutflow=summed_cutflow([f.selections for f in files]), resample_plots=[],
                     learning_curves=plots / "learning_curves.png", figures=figures, metrics=with_samples(metrics))

    write_predict_outputs(out, oof=oof, ensembles=ensembles, settings=settings, epochs_csv=[epochs_csv],
                          config_digest="benchmark", created_by=CREATED_BY, before_target=report)
    return out / "report.html"


def bench_training(cfg: Config, files: Sequence[CachedFile], work_dir: Path, row_type: Callable[..., R]) -> list[R]:
    """Training throughput (MLP vs plain loop and LUMIN, GNN), TrainFold[0], predict throughput and quality.

    Runs on the train file the preprocessing rows wrote (``train_sample/train.h5`` below the
    config's output root); ``files`` are the input files whose selections and graphs files
    exist, from which the held-out split is written. ``row_type`` is as in ``bench_preprocessing``.
    """
    if cfg["train"] is None:
        print("  no train block in the config: no training rows", flush=True)
        return []
    path = train_path_of(cfg)
    if not path.exists():
        raise FileNotFoundError(f"{path}: run the preprocessing rows first")
    rows = mlp_rows(row_type, cfg, path, work_dir)
    rows.append(gnn_row(row_type, cfg, path))
    rows += default_model_rows(row_type, cfg, files, path)
    return rows


def main(argv: list[str] | None = None) -> int:
    """The training rows alone, on the work directory of an earlier ``run.py --jets N``."""
    import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=run.DEFAULT_JETS, help="the --jets of the earlier run")
    args = parser.parse_args(argv)
    work_dir = run.WORK / f"jets_{args.jets}"
    cfg = run.load_config(None, run.sample_overrides(args.jets, work_dir))
    rows = bench_training(cfg, run.input_files(cfg), work_dir, run.Row)
    print()
    run.print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
