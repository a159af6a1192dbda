"""Predict as one call: out-of-fold predictions of the train split, fold-ensemble predictions of
other splits and of the samples in ``predict.samples``, metrics against the toy's Bayes-optimal
discriminant, and plots.

Each train-split jet is predicted by the one fold model that validated on it (never trained on
it); jets of folds with no model (``train.folds`` a subset) are left out. Other splits get the
weighted mean of every fold model (weights uniform or reciprocal to the best validation loss).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from tracerflow.evaluate.ensemble import ensemble, ensemble_weights
from tracerflow.evaluate.metrics import bayes_metrics, flavour_metrics, fold_summary, roc_curve, tagger_discriminant
from tracerflow.evaluate.predictions_file import write_predictions
from tracerflow.training.data import TrainFileDataset
from tracerflow.training.fit import predict
from tracerflow.write.umami_file import UmamiFile

LLR_LABELS = ("llr_bl", "llr_cl")


ROC_PLOTS = {"ujets": "roc_light.png", "cjets": "roc_c.png"}
EFFICIENCY_ROC = "roc.png"

def _columns(path: str | os.PathLike) -> dict[str, Any]:
    """Per-jet columns of a train file that predictions and metrics need (a few numbers per jet)."""
    with UmamiFile(path) as f:
        out = {name: f.dataset(f"jets/{name}")[:] for name in ("hash", "labels", "fold", "weight")}
        out["class_names"] = list(f.class_names)
        names = f.add_label_names
        out["llr"] = ({n: f.dataset(f"jets/add_labels/{n}")[:] for n in LLR_LABELS}
                      if all(n in names for n in LLR_LABELS) else None)
    return out


def input_sizes(path: str | os.PathLike) -> tuple[int, int]:
    """Jet and track input columns of a train file: what a fold model takes."""
    with UmamiFile(path) as f:
        return int(f.dataset("jets/inputs").shape[1]), int(f.dataset("tracks/inputs").shape[2])


def out_of_fold(models: Mapping[int, torch.nn.Module], path: str | os.PathLike, *, batch_size: int,
                device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(rows, predictions, columns): each row predicted by the model of its own fold."""
    columns = _columns(path)
    rows, preds = [], []
    for fold, model in sorted(models.items()):
        data = TrainFileDataset(path, [fold], batch_size=batch_size, shuffle=False)
        rows.append(np.flatnonzero(columns["fold"] == fold))
        preds.append(predict(model, data, device))
    order = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    pred = np.concatenate(preds) if preds else np.zeros((0, len(columns["class_names"])), np.float32)
    return order, pred.astype(np.float32), columns


def fold_ensemble(models: Mapping[int, torch.nn.Module], losses: Mapping[int, float], path: str | os.PathLike, *,
                  mode: str, batch_size: int, device: str | torch.device = "cpu") -> tuple[np.ndarray, dict[str, Any]]:
    """Predictions of every jet of a train file by the weighted mean of the fold models."""
    columns = _columns(path)
    folds = sorted(models)
    weights = ensemble_weights([losses[k] for k in folds], mode)
    data = TrainFileDataset(path, None, batch_size=batch_size, shuffle=False)
    pred = ensemble([predict(models[k], data, device) for k in folds], weights)
    return pred.astype(np.float32), columns


def jet_metrics(pred: np.ndarray, columns: Mapping[str, Any], rows: np.ndarray, fc: float) -> dict[str, Any]:
    """Model metrics of ``rows`` and, where the file has the toy LLRs, the Bayes-optimal ones."""
    labels, weights, names = columns["labels"][rows], columns["weight"][rows], columns["class_names"]
    out: dict[str, Any] = {"model": flavour_metrics(pred, labels, names, weights, fc=fc), "jets": int(len(rows))}
    if columns["llr"] is not None:
        llr = columns["llr"]
        out["bayes_optimal"] = bayes_metrics(llr["llr_bl"][rows], llr["llr_cl"][rows], labels, names, weights)
    return out


def write_predict_outputs(out_dir: str | os.PathLike, *, oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                          ensembles: Mapping[str, tuple[np.ndarray, dict[str, Any]]], fc: float,
                          epochs_csv: list[Path], config_digest: str, created_by: str,
                          samples: Mapping[str, tuple[np.ndarray, dict[str, Any]]] | None = None,
                          before_target: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Metrics JSON, plots and the predictions files (``<split>.h5``, ``sample_<name>.h5`` per ensemble of a
    predict sample); ``before_target(metrics)`` (the report) runs just before the out-of-fold file, the
    task's target, which comes last."""
    from tracerflow.evaluate.plots import plot_discriminant, plot_learning_curves, plot_roc

    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    rows, pred, columns = oof
    per_fold = {int(k): jet_metrics(pred[columns["fold"][rows] == k], columns, rows[columns["fold"][rows] == k], fc)
                for k in np.unique(columns["fold"][rows])}
    metrics: dict[str, Any] = {
        "fc": fc,
        "out_of_fold": {"per_fold": per_fold,
                        "summary": fold_summary([m["model"] for m in per_fold.values()]) if per_fold else {},
                        "all": jet_metrics(pred, columns, rows, fc)},
        "ensembles": {split: jet_metrics(p, c, np.arange(len(p)), fc) for split, (p, c) in ensembles.items()},
    }
    samples = dict(samples or {})
    labelled = {name: (p, c) for name, (p, c) in samples.items() if len(p) and np.all(c["labels"] >= 0)}
    if labelled:
        metrics["samples"] = {name: jet_metrics(p, c, np.arange(len(p)), fc) for name, (p, c) in labelled.items()}
    (out_dir / "metrics.json").write_text(json.dumps(_strict(metrics), indent=1, sort_keys=True, allow_nan=False) + "\n")
    scored = {**ensembles, **{f"sample {name}": v for name, v in labelled.items()}}
    for background, plot in ROC_PLOTS.items():
        if background not in columns["class_names"]:
            continue
        curves = _roc_curves(per_fold, pred, rows, columns, scored, fc, background)
        plot_roc(curves, out_dir / "plots" / plot, xlabel="b-jet efficiency", ylabel=f"{background[0]}-jet rejection")
        if background == "ujets":
            plot_roc(curves, out_dir / "plots" / EFFICIENCY_ROC, xlabel="b-jet efficiency",
                     ylabel="light-jet efficiency", rejection=False)
    if len(rows):
        disc = tagger_discriminant(pred, columns["class_names"], fc=fc)
        plot_discriminant(disc, columns["labels"][rows], columns["class_names"], columns["weight"][rows],
                          out_dir / "plots" / "discriminant.png", xlabel="D_b (out of fold)")
    if epochs_csv:
        plot_learning_curves(epochs_csv, out_dir / "plots" / "learning_curves.png")
    for split, (p, c) in ensembles.items():
        write_predictions(out_dir / f"{split}.h5", hash=c["hash"], pred=p, label=c["labels"], fold=c["fold"],
                          weight=c["weight"], class_names=c["class_names"], kind="ensemble", split=split,
                          config_digest=config_digest, created_by=created_by)
    for name, (p, c) in samples.items():
        write_predictions(out_dir / f"sample_{name}.h5", hash=c["hash"], pred=p, label=c["labels"],
                          fold=np.full(len(p), -1), weight=c["weight"], class_names=c["class_names"], kind="ensemble",
                          split=f"sample_{name}", config_digest=config_digest, created_by=created_by,
                          attrs={"sample": name})
    if before_target is not None:
        before_target(metrics)
    write_predictions(out_dir / "out_of_fold.h5", hash=columns["hash"][rows], pred=pred, label=columns["labels"][rows],
                      fold=columns["fold"][rows], weight=columns["weight"][rows], class_names=columns["class_names"],
                      kind="out_of_fold", split="train", config_digest=config_digest, created_by=created_by)
    return metrics


def _strict(value: Any) -> Any:
    """Plain JSON: numpy numbers as Python numbers, infinite rejections (no background left) and NaN as null."""
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _roc_curves(per_fold: Mapping[int, Any], pred: np.ndarray, rows: np.ndarray, columns: Mapping[str, Any],
                ensembles: Mapping[str, tuple[np.ndarray, dict[str, Any]]], fc: float,
                background: str = "ujets") -> dict[str, tuple]:
    """Rejection of ``background`` vs b efficiency per fold, per ensemble and for the Bayes-optimal LLR
    of b against that background (light: llr_bl; c: llr_bl - llr_cl)."""
    names = columns["class_names"]
    b, light = names.index("bjets"), names.index(background)

    def curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (labels == b) | (labels == light)
        sig, bkg = roc_curve(scores[keep], labels[keep] == b, weights[keep])
        with np.errstate(divide="ignore"):
            return sig, 1.0 / bkg

    labels, weights = columns["labels"][rows], columns["weight"][rows]
    disc = tagger_discriminant(pred, names, fc=fc) if len(rows) else np.zeros(0)
    folds = columns["fold"][rows]
    curves = {f"fold {k}": curve(disc[folds == k], labels[folds == k], weights[folds == k]) for k in per_fold}
    for split, (p, c) in ensembles.items():
        curves[f"ensemble ({split})"] = curve(tagger_discriminant(p, names, fc=fc), c["labels"], c["weight"])
    if columns["llr"] is not None and len(rows):
        llr = columns["llr"]["llr_bl"][rows]
        if background == "cjets":
            llr = llr - columns["llr"]["llr_cl"][rows]
        curves["bayes optimal (train)"] = curve(llr, labels, weights)
    return curves
