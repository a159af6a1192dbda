"""Predict as one call: out-of-fold predictions of the train split, fold-ensemble predictions of
other splits and of the samples in ``predict.samples``, metrics, plots, and the removal of
outputs a previous config left behind.

Each train-split row is predicted by the one fold model that validated on it (never trained on
it); rows of folds with no model (``train.folds`` a subset) are left out. Other splits get the
weighted mean of every fold model (weights uniform or reciprocal to the best validation loss).

Objectives (``train.model.tail.objective``):

- ``multiclass``: the models' softmax probabilities ``(n, k)`` in class-index order.
- ``binary``: one sigmoid output, the probability of the positive class (the fold model file's
  ``positive`` attribute; the last class name when it has none); ensembles average it, and it is
  expanded to two columns in class order (:func:`~tracerflow.evaluate.metrics.expand_binary`).
- ``regression``: the models predict standardised targets; each fold's outputs become
  ``output * target_scale + target_shift`` (its model file's attributes) before ensembling. The
  true values are the train file's ``jets/targets`` (attribute ``names``).

``metrics.json``::

    {"objective", "row_level", "classes" | "targets", "positive" (binary), "discriminant" (or null),
     "reference" ({score, name, positive} or null),
     "out_of_fold": {"per_fold": {fold: block}, "summary": {metric: {mean, std, per_fold[, reason]}},
                     "all": block},
     "ensembles": {split: block}, "samples": {name: block} (labelled predict samples only)}

where a block is :func:`~tracerflow.evaluate.metrics.classification_metrics`' (plus
``bayes_optimal``, the toy's reference, when the train file has the ``llr_bl``/``llr_cl`` add
labels and the classes are exactly bjets, cjets, ujets; plus ``reference``, the metrics of
``predict.reference.score`` from :func:`~tracerflow.evaluate.metrics.reference_metrics`, when a
reference is configured) or
:func:`~tracerflow.evaluate.metrics.regression_metrics`'; null values carry their reasons in the
block's ``null_reasons``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import h5py
import numpy as np
import torch

from tracerflow.evaluate.ensemble import ensemble, ensemble_weights
from tracerflow.evaluate.metrics import (
    TOY_CLASSES,
    MetricUndefined,
    bayes_metrics,
    classification_metrics,
    discriminant,
    expand_binary,
    fold_summary,
    reference_metrics,
    regression_metrics,
    roc_curve,
    toy_log_likelihoods,
    warn_nulls,
)
from tracerflow.evaluate.predictions_file import SCHEMA as PREDICTIONS_SCHEMA
from tracerflow.evaluate.predictions_file import write_predictions
from tracerflow.io.atomic import write_atomic
from tracerflow.training.data import TrainFileDataset
from tracerflow.training.fit import predict
from tracerflow.write.scaling import scale_entry
from tracerflow.write.umami_file import UmamiFile

LLR_LABELS = ("llr_bl", "llr_cl")
OBJECTIVES = ("multiclass", "binary", "regression")
EXPORT_SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictSettings:
    """What Predict evaluates: the objective, the row level's name (``jets``, ``events``, ...) and the
    ``predict`` block's metric settings (``discriminant``, ``calibration_bins``, ``regression_bins``,
    ``reference``)."""

    objective: str = "multiclass"
    row_level: str = "jets"
    discriminant: Mapping[str, Any] | None = None
    calibration_bins: int = 10
    regression_bins: Mapping[str, Any] | None = None
    reference: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")


def row_level(cfg: Any) -> str:
    """The plural noun of a row: ``events`` for event-level selections, else the collection's name."""
    template = cfg["selection"]["template"]
    if isinstance(template, Mapping):
        level = template["level"]
    else:
        from tracerflow.templates.loader import load_template

        level = load_template(cfg, "selection").level
    return "events" if level == "event" else str(level)


def settings_from_config(cfg: Any) -> PredictSettings:
    """:class:`PredictSettings` of a validated config (the objective from ``train.model.tail``)."""
    from tracerflow.config.load import objective_of

    block = cfg["predict"]
    return PredictSettings(objective=objective_of(cfg["train"]), row_level=row_level(cfg),
                           discriminant=block["discriminant"], calibration_bins=block["calibration_bins"],
                           regression_bins=block["regression_bins"], reference=block["reference"])


def _names_attr(value: Any) -> list[str]:
    """A list of names stored as JSON text or as an HDF5 string array."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return [str(v) for v in json.loads(value)]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in value]


def _unscaled_jet_variable(f: UmamiFile, name: str) -> np.ndarray:
    """A jet input column in its own units: the scale dict's transform undone."""
    column = f.jet_variables.index(name)
    entry = scale_entry(f.scale_dict, "jets", name)
    x = f.dataset("jets/inputs")[:, column].astype(np.float64) * float(entry["scale"]) + float(entry["shift"])
    if entry.get("log", False):
        return np.exp(x)
    if entry.get("asinh", False):
        return np.sinh(x)
    return x


def _optional_dataset(f: UmamiFile, name: str) -> h5py.Dataset | None:
    try:
        return f.dataset(name)
    except KeyError:
        return None


def _origin(f: UmamiFile) -> dict[str, Any] | None:
    """Where each row comes from (sample and file codes with their names, tree entry, row within the
    event), from the train file's ``jets/{source, entry, item}`` and ``sources``; None without them."""
    datasets = {name: _optional_dataset(f, f"jets/{name}") for name in ("source", "entry", "item")}
    if any(d is None for d in datasets.values()) or "sources" not in f.attrs:
        return None
    sources = [tuple(s) for s in json.loads(f.attrs["sources"])]
    samples = list(dict.fromkeys(s for s, _ in sources))
    files = list(dict.fromkeys(name for _, name in sources))
    source = datasets["source"][:].astype(np.int64)
    return {"sample": np.array([samples.index(s) for s, _ in sources], np.int64)[source],
            "file": np.array([files.index(name) for _, name in sources], np.int64)[source],
            "entry": datasets["entry"][:], "item": datasets["item"][:], "samples": samples, "files": files}


def read_columns(path: str | os.PathLike, settings: PredictSettings | None = None) -> dict[str, Any]:
    """Per-row columns of a train file that predictions and metrics need (a few numbers per row).

    ``hash``, ``labels``, ``fold``, ``weight``, ``class_names``; ``origin`` (where each row comes
    from: see :func:`_origin`; None for files without it); ``llr`` (the toy's exact LLRs, or
    None); ``reference`` (the ``predict.reference.score`` add label; None without a reference or
    when the file lacks it); for a regression ``targets`` ``(n, t)`` and ``target_names`` (None when the file has no
    ``jets/targets``) and, with ``regression_bins``, ``binning`` (the variable's values per row).
    """
    settings = settings or PredictSettings()
    with UmamiFile(path) as f:
        out: dict[str, Any] = {name: f.dataset(f"jets/{name}")[:] for name in ("hash", "labels", "fold", "weight")}
        out["class_names"] = list(f.class_names)
        out["origin"] = _origin(f)
        add_labels = f.add_label_names
        toy = sorted(out["class_names"]) == sorted(TOY_CLASSES) and all(n in add_labels for n in LLR_LABELS)
        out["llr"] = {n: f.dataset(f"jets/add_labels/{n}")[:] for n in LLR_LABELS} if toy else None
        reference = settings.reference["score"] if settings.reference is not None else None
        out["reference"] = (f.dataset(f"jets/add_labels/{reference}")[:].astype(np.float64)
                            if reference is not None and reference in add_labels else None)
        out["targets"] = out["target_names"] = out["binning"] = None
        targets = _optional_dataset(f, "jets/targets") if settings.objective == "regression" else None
        if targets is not None:
            out["targets"] = targets[:].astype(np.float32).reshape(len(out["hash"]), -1)
            out["target_names"] = list(f.target_names) or _names_attr(targets.attrs["names"])
        binning = settings.regression_bins
        if settings.objective == "regression" and binning is not None:
            name = binning["variable"]
            if out["target_names"] is not None and name in out["target_names"]:
                out["binning"] = out["targets"][:, out["target_names"].index(name)].astype(np.float64)
            elif name in add_labels:
                out["binning"] = f.dataset(f"jets/add_labels/{name}")[:].astype(np.float64)
            elif name in f.jet_variables:
                out["binning"] = _unscaled_jet_variable(f, name)
            else:
                raise ValueError(f"{path}: predict.regression_bins.variable {name!r} is neither a target, an add "
                                 f"label nor a jet variable of the file")
    return out


def input_sizes(path: str | os.PathLike) -> tuple[int, int]:
    """Jet and track input columns of a train file: what a fold model takes (no track columns in
    files of analyses without tracks)."""
    with UmamiFile(path) as f:
        return int(f.dataset("jets/inputs").shape[1]), len(f.track_variables)


def _with_tracks(model: torch.nn.Module) -> bool:
    """Whether the model reads tracks (it has a set encoder)."""
    return getattr(model, "set_encoder", None) is not None


def _attr_list(attrs: Mapping[str, Any], key: str) -> list[Any] | None:
    value = attrs.get(key)
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return list(np.atleast_1d(value).tolist())


def positive_class(model_attrs: Mapping[int, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """The class a binary model scores: the fold models' ``positive`` attribute (they must agree), or
    the last class name when none has one."""
    found = {str(a["positive"]) for a in model_attrs.values() if a.get("positive") not in (None, "", "null")}
    if len(found) > 1:
        raise ValueError(f"the fold models score different positive classes: {sorted(found)}")
    positive = found.pop() if found else list(class_names)[-1]
    if positive not in class_names:
        raise ValueError(f"positive class {positive!r} is not a class of the train file ({list(class_names)})")
    return positive


def _target_transform(attrs: Mapping[str, Any], target_names: Sequence[str] | None,
                      fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) that take a regression model's standardised outputs to the targets' units."""
    names, shift, scale = (_attr_list(attrs, k) for k in ("targets", "target_shift", "target_scale"))
    if shift is None or scale is None:
        warnings.warn(f"fold {fold}: the model file has no target_shift/target_scale; its outputs are "
                      "taken as the targets' own units", stacklevel=3)
        n = len(target_names) if target_names else 1
        return np.ones(n), np.zeros(n)
    if names is not None and target_names is not None and [str(n) for n in names] != list(target_names):
        raise ValueError(f"fold {fold}: the model predicts targets {names}, the file holds {list(target_names)}")
    return np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)


def fold_outputs(model: torch.nn.Module, attrs: Mapping[str, Any], data: Any, *, objective: str, fold: int,
                 target_names: Sequence[str] | None = None, device: str | torch.device = "cpu") -> np.ndarray:
    """One fold model's outputs: probabilities ``(n, k)`` (multiclass), the positive class's
    probability ``(n,)`` (binary) or predictions ``(n, t)`` in the targets' units (regression)."""
    out = np.asarray(predict(model, data, device), dtype=np.float64)
    if objective == "binary":
        return out.reshape(-1)
    if objective == "regression":
        scale, shift = _target_transform(attrs, target_names, fold)
        out = out.reshape(len(out), -1)
        if out.shape[1] != len(scale):
            raise ValueError(f"fold {fold}: the model has {out.shape[1]} outputs and {len(scale)} target scales")
        return out * scale[None, :] + shift[None, :]
    return out


def _finish(pred: np.ndarray, objective: str, columns: dict[str, Any],
            model_attrs: Mapping[int, Mapping[str, Any]]) -> np.ndarray:
    """Binary outputs expanded to class-order probabilities (the positive class recorded in ``columns``)."""
    if objective == "binary":
        positive = positive_class(model_attrs, columns["class_names"])
        columns["positive"] = positive
        return expand_binary(pred, columns["class_names"], positive).astype(np.float32)
    return np.asarray(pred, dtype=np.float32)


def _empty(objective: str, columns: Mapping[str, Any]) -> np.ndarray:
    if objective == "regression":
        return np.zeros((0, len(columns["target_names"] or [])))
    return np.zeros((0,) if objective == "binary" else (0, len(columns["class_names"])))


def out_of_fold(models: Mapping[int, torch.nn.Module], path: str | os.PathLike, *, batch_size: int,
                device: str | torch.device = "cpu", settings: PredictSettings | None = None,
                model_attrs: Mapping[int, Mapping[str, Any]] | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(rows, predictions, columns): each row predicted by the model of its own fold."""
    settings = settings or PredictSettings()
    attrs = {k: dict((model_attrs or {}).get(k, {})) for k in models}
    columns = read_columns(path, settings)
    rows, preds = [], []
    for fold, model in sorted(models.items()):
        data = TrainFileDataset(path, [fold], batch_size=batch_size, shuffle=False, with_tracks=_with_tracks(model))
        rows.append(np.flatnonzero(columns["fold"] == fold))
        preds.append(fold_outputs(model, attrs[fold], data, objective=settings.objective, fold=fold,
                                  target_names=columns["target_names"], device=device))
    order = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    pred = np.concatenate(preds) if preds else _empty(settings.objective, columns)
    return order, _finish(pred, settings.objective, columns, attrs), columns


def fold_ensemble(models: Mapping[int, torch.nn.Module], losses: Mapping[int, float], path: str | os.PathLike, *,
                  mode: str, batch_size: int, device: str | torch.device = "cpu",
                  settings: PredictSettings | None = None,
                  model_attrs: Mapping[int, Mapping[str, Any]] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Predictions of every row of a train file by the weighted mean of the fold models (a regression's
    in the targets' units, each fold's transform applied first)."""
    settings = settings or PredictSettings()
    attrs = {k: dict((model_attrs or {}).get(k, {})) for k in models}
    columns = read_columns(path, settings)
    folds = sorted(models)
    weights = ensemble_weights([losses[k] for k in folds], mode)
    with_tracks = any(_with_tracks(m) for m in models.values())
    data = TrainFileDataset(path, None, batch_size=batch_size, shuffle=False, with_tracks=with_tracks)
    outputs = [fold_outputs(models[k], attrs[k], data, objective=settings.objective, fold=k,
                            target_names=columns["target_names"], device=device) for k in folds]
    return _finish(ensemble(outputs, weights), settings.objective, columns, attrs), columns


def evaluate_rows(pred: np.ndarray, columns: Mapping[str, Any], rows: np.ndarray, settings: PredictSettings,
                  where: str) -> dict[str, Any]:
    """The metrics block of ``rows`` of a file (``pred`` holds their predictions), with the toy's
    Bayes-optimal reference where the file has it; every null is warned about, naming ``where``."""
    weights = columns["weight"][rows]
    if settings.objective == "regression":
        if columns["targets"] is None:
            raise ValueError(f"{where}: the file has no jets/targets to evaluate a regression against")
        binning = None
        if settings.regression_bins is not None:
            binning = (settings.regression_bins["variable"], columns["binning"][rows],
                       settings.regression_bins["bins"])
        block = regression_metrics(pred, columns["targets"][rows], columns["target_names"], weights, where=where,
                                   binning=binning)
    else:
        labels = columns["labels"][rows]
        block = classification_metrics(pred, labels, columns["class_names"], weights, where=where,
                                       discriminant_spec=settings.discriminant, positive=columns.get("positive"),
                                       calibration_bins=settings.calibration_bins)
        if columns["llr"] is not None:
            llr = columns["llr"]
            values, reasons = bayes_metrics(llr["llr_bl"][rows], llr["llr_cl"][rows], labels, columns["class_names"],
                                            weights, where=where, discriminant_spec=settings.discriminant)
            block["bayes_optimal"] = values
            block["null_reasons"].update(reasons)
        if settings.reference is not None:
            score = settings.reference["score"]
            missing = None if columns["reference"] is not None else f"the file has no add label {score!r} ({where})"
            values, reasons = reference_metrics(
                None if missing else columns["reference"][rows], labels, columns["class_names"], weights,
                positive=reference_positive(columns, settings), binary=settings.objective == "binary", where=where,
                reason=missing)
            block["reference"] = values
            block["null_reasons"].update(reasons)
    warn_nulls(block, stacklevel=2)
    return block


def reference_positive(columns: Mapping[str, Any], settings: PredictSettings) -> str:
    """The class a reference score ranks high: a binary model's positive class; with two classes and a
    multiclass objective, the discriminant's signal, else the last class."""
    if "positive" in columns:
        return str(columns["positive"])
    if settings.discriminant is not None:
        return str(settings.discriminant["signal"])
    return str(columns["class_names"][-1])


def _evaluable(columns: Mapping[str, Any], settings: PredictSettings) -> bool:
    """Whether a file's rows have the truth metrics need (labels of the classes, or regression targets)."""
    if settings.objective == "regression":
        return columns["targets"] is not None
    labels = columns["labels"]
    return bool(len(labels)) and bool(np.all((labels >= 0) & (labels < len(columns["class_names"]))))


def _safe(name: str) -> str:
    """A name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _write_json(path: Path, value: Any) -> None:
    """Strict JSON written atomically (temporary file, then rename)."""
    write_atomic(path, json.dumps(_strict(value), indent=1, sort_keys=True, allow_nan=False) + "\n")


def collect_metrics(oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                    ensembles: Mapping[str, tuple[np.ndarray, dict[str, Any]]], settings: PredictSettings,
                    samples: Mapping[str, tuple[np.ndarray, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The whole ``metrics.json`` content (module docstring)."""
    rows, pred, columns = oof
    folds = columns["fold"][rows]
    per_fold = {int(k): evaluate_rows(pred[folds == k], columns, rows[folds == k], settings, f"fold {int(k)}")
                for k in np.unique(folds)}
    metrics: dict[str, Any] = {"objective": settings.objective, "row_level": settings.row_level,
                               "discriminant": dict(settings.discriminant) if settings.discriminant else None,
                               "reference": None}
    if settings.objective == "regression":
        metrics["targets"] = columns["target_names"]
    else:
        metrics["classes"] = columns["class_names"]
        if "positive" in columns:
            metrics["positive"] = columns["positive"]
        if settings.reference is not None:
            metrics["reference"] = {"score": settings.reference["score"], "name": settings.reference["name"],
                                    "positive": reference_positive(columns, settings)}
    metrics["out_of_fold"] = {
        "per_fold": per_fold,
        "summary": fold_summary({k: m["model"] for k, m in per_fold.items()},
                                {k: {key[len("model."):]: why for key, why in m["null_reasons"].items()
                                     if key.startswith("model.")} for k, m in per_fold.items()})
                   if per_fold else {},
        "all": evaluate_rows(pred, columns, rows, settings, "the out-of-fold predictions (all folds)"),
    }
    metrics["ensembles"] = {split: evaluate_rows(p, c, np.arange(len(p)), settings, f"split {split}")
                            for split, (p, c) in ensembles.items() if _evaluable(c, settings)}
    labelled = {name: (p, c) for name, (p, c) in (samples or {}).items() if len(p) and _evaluable(c, settings)}
    if labelled:
        metrics["samples"] = {name: evaluate_rows(p, c, np.arange(len(p)), settings, f"sample {name}")
                              for name, (p, c) in labelled.items()}
    return metrics


Figure = tuple[str, Path]
"""(report heading, PNG path)."""


def _rejection_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray, signal: int,
                     background: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(signal efficiency, background rejection) of ``signal`` against ``background``, None when undefined."""
    keep = (labels == signal) | (labels == background)
    try:
        sig, bkg = roc_curve(scores[keep], labels[keep] == signal, weights[keep])
    except MetricUndefined:
        return None
    with np.errstate(divide="ignore"):
        return sig, 1.0 / bkg


def _rest_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                cls: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        sig, bkg = roc_curve(scores, labels == cls, weights)
    except MetricUndefined:
        return None
    with np.errstate(divide="ignore"):
        return sig, 1.0 / bkg


def _reference_score(columns: Mapping[str, Any], rows: np.ndarray, settings: PredictSettings,
                     toward: int) -> np.ndarray | None:
    """The reference score of ``rows``, higher for class ``toward`` (two classes); None without one."""
    if settings.reference is None or columns.get("reference") is None or len(columns["class_names"]) != 2:
        return None
    if not len(rows):
        return None
    score = columns["reference"][rows]
    positive = list(columns["class_names"]).index(reference_positive(columns, settings))
    return score if toward == positive else -score


def _reference_label(settings: PredictSettings) -> str:
    return f"{settings.reference['name']} (out of fold)" if settings.reference is not None else ""


def _scored_sets(oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                 scored: Mapping[str, tuple[np.ndarray, dict[str, Any]]]) -> dict[str, tuple[np.ndarray, dict, np.ndarray]]:
    """Curve name -> (predictions, columns, rows) for each fold, each ensemble and each labelled sample."""
    rows, pred, columns = oof
    folds = columns["fold"][rows]
    out = {f"fold {int(k)}": (pred[folds == k], columns, rows[folds == k]) for k in np.unique(folds)}
    for name, (p, c) in scored.items():
        out[f"ensemble ({name})"] = (p, c, np.arange(len(p)))
    return out


def classification_plots(plots: Path, oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                         scored: Mapping[str, tuple[np.ndarray, dict[str, Any]]], settings: PredictSettings,
                         metrics: Mapping[str, Any]) -> list[Figure]:
    """ROC curves (per discriminant background, or each class against the rest), score distributions,
    calibration curves; returns the figures drawn, in report order."""
    from tracerflow.evaluate.plots import plot_calibration, plot_class_distributions, plot_roc

    rows, pred, columns = oof
    names = columns["class_names"]
    labels, weights = columns["labels"][rows], columns["weight"][rows]
    sets = _scored_sets(oof, scored)
    figures: list[Figure] = []
    disc = settings.discriminant
    if disc is not None:
        s = names.index(disc["signal"])
        for b, bkg in enumerate(names):
            if b == s:
                continue
            curves = {}
            for name, (p, c, r) in sets.items():
                score = discriminant(p, names, disc["signal"], disc["fractions"])
                curve = _rejection_curve(score, c["labels"][r], c["weight"][r], s, b)
                if curve is not None:
                    curves[name] = curve
            if columns["llr"] is not None and len(rows):
                L = toy_log_likelihoods(columns["llr"]["llr_bl"][rows], columns["llr"]["llr_cl"][rows])
                curve = _rejection_curve(L[disc["signal"]] - L[bkg], labels, weights, s, b)
                if curve is not None:
                    curves["bayes optimal (train)"] = curve
            reference = _reference_score(columns, rows, settings, s)
            if reference is not None:
                curve = _rejection_curve(reference, labels, weights, s, b)
                if curve is not None:
                    curves[_reference_label(settings)] = curve
            path = plots / f"roc_{_safe(bkg)}.png"
            plot_roc(curves, path, xlabel=f"{disc['signal']} efficiency", ylabel=f"{bkg} rejection",
                     references=[_reference_label(settings)])
            figures.append((f"{bkg} rejection vs {disc['signal']} efficiency", path))
        if len(rows):
            path = plots / "discriminant.png"
            plot_class_distributions(discriminant(pred, names, disc["signal"], disc["fractions"]), labels, names,
                                     weights, path, xlabel=f"discriminant D({disc['signal']}), out of fold")
            figures.append((f"Discriminant D({disc['signal']}) per class", path))
    else:
        classes = [names.index(columns["positive"])] if "positive" in columns else range(len(names))
        for i in classes:
            rest = names[1 - i] if len(names) == 2 else "rest"
            curves = {}
            for name, (p, c, r) in sets.items():
                others = np.maximum(np.delete(p, i, axis=1).sum(axis=1), 1e-30)
                score = np.log(np.maximum(p[:, i], 1e-30)) - np.log(others)
                curve = _rest_curve(score, c["labels"][r], c["weight"][r], i)
                if curve is not None:
                    curves[name] = curve
            reference = _reference_score(columns, rows, settings, i)
            if reference is not None:
                curve = _rest_curve(reference, labels, weights, i)
                if curve is not None:
                    curves[_reference_label(settings)] = curve
            path = plots / f"roc_{_safe(names[i])}_vs_{_safe(rest)}.png"
            plot_roc(curves, path, xlabel=f"{names[i]} efficiency",
                     ylabel=f"{rest} efficiency" if len(names) == 2 else "efficiency of the other classes",
                     rejection=False, references=[_reference_label(settings)])
            figures.append((f"ROC: {names[i]} against " + (rest if len(names) == 2 else "the other classes"), path))
    if len(rows):
        classes = [names.index(columns["positive"])] if "positive" in columns else range(len(names))
        for i in classes:
            path = plots / f"score_{_safe(names[i])}.png"
            plot_class_distributions(pred[:, i], labels, names, weights, path, xlabel=f"p({names[i]}), out of fold",
                                     value_range=(0.0, 1.0))
            figures.append((f"Score p({names[i]}) per class", path))
        calibration = metrics["out_of_fold"]["all"]["calibration"]
        path = plots / "calibration.png"
        plot_calibration({name: (c["mean_predicted"], c["observed"]) for name, c in calibration.items()}, path,
                         title="out of fold")
        figures.append(("Calibration", path))
    return figures


def regression_plots(plots: Path, oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                     metrics: Mapping[str, Any]) -> list[Figure]:
    """Predicted against true values per target and, with bins, bias and resolution per bin."""
    from tracerflow.evaluate.plots import plot_binned, plot_pred_vs_true

    rows, pred, columns = oof
    figures: list[Figure] = []
    if not len(rows):
        return figures
    for t, name in enumerate(columns["target_names"]):
        path = plots / f"pred_vs_true_{_safe(name)}.png"
        plot_pred_vs_true(pred[:, t], columns["targets"][rows, t], columns["weight"][rows], path, name=name)
        figures.append((f"Predicted vs true {name} (out of fold)", path))
    binned = metrics["out_of_fold"]["all"].get("binned")
    if binned is not None:
        for what in ("bias", "resolution"):
            path = plots / f"{what}_vs_{_safe(binned['variable'])}.png"
            plot_binned(binned["edges"], {t: v[what] for t, v in binned["targets"].items()}, path,
                        xlabel=binned["variable"], ylabel=f"{what} (pred - true: "
                        + ("median" if what == "bias" else "IQR") + ")")
            figures.append((f"{what.capitalize()} vs {binned['variable']} (out of fold)", path))
    return figures


def write_predict_outputs(out_dir: str | os.PathLike, *, oof: tuple[np.ndarray, np.ndarray, dict[str, Any]],
                          ensembles: Mapping[str, tuple[np.ndarray, dict[str, Any]]], settings: PredictSettings,
                          epochs_csv: list[Path], config_digest: str, created_by: str,
                          samples: Mapping[str, tuple[np.ndarray, dict[str, Any]]] | None = None,
                          before_target: Callable[[dict[str, Any], list[Figure]], None] | None = None
                          ) -> dict[str, Any]:
    """Metrics JSON, plots and the predictions files (``<split>.h5``, ``sample_<name>.h5`` per ensemble
    of a predict sample); ``before_target(metrics, figures)`` (the report) runs just before the
    out-of-fold file, the task's target, which comes last. Metrics that cannot be computed are null
    (with reasons and warnings): every predictions file is written whatever the metrics."""
    from tracerflow.evaluate.plots import plot_learning_curves

    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    samples = dict(samples or {})
    metrics = collect_metrics(oof, ensembles, settings, samples)
    _write_json(out_dir / "metrics.json", metrics)
    figures: list[Figure] = []
    if settings.objective == "regression":
        figures += regression_plots(plots, oof, metrics)
    else:
        scored = {**{s: v for s, v in ensembles.items() if _evaluable(v[1], settings)},
                  **{f"sample {n}": v for n, v in samples.items() if len(v[0]) and _evaluable(v[1], settings)}}
        figures += classification_plots(plots, oof, scored, settings, metrics)
    if epochs_csv:
        plot_learning_curves(epochs_csv, plots / "learning_curves.png")
    common = {"config_digest": config_digest, "created_by": created_by}
    for split, (p, c) in ensembles.items():
        _write_file(out_dir / f"{split}.h5", p, c, np.arange(len(p)), c["fold"], settings, kind="ensemble",
                    split=split, **common)
    for name, (p, c) in samples.items():
        _write_file(out_dir / f"sample_{name}.h5", p, c, np.arange(len(p)), np.full(len(p), -1), settings,
                    kind="ensemble", split=f"sample_{name}", attrs={"sample": name}, **common)
    if before_target is not None:
        before_target(metrics, figures)
    rows, pred, columns = oof
    _write_file(out_dir / "out_of_fold.h5", pred, columns, rows, columns["fold"][rows], settings, kind="out_of_fold",
                split="train", **common)
    return metrics


def _write_file(path: Path, pred: np.ndarray, columns: Mapping[str, Any], rows: np.ndarray, fold: np.ndarray,
                settings: PredictSettings, **kwargs: Any) -> None:
    """One predictions file of ``rows`` of a train file."""
    common = {"hash": columns["hash"][rows], "pred": pred, "fold": fold, "weight": columns["weight"][rows],
              "objective": settings.objective, "class_names": columns["class_names"]}
    origin = columns.get("origin")
    if origin is not None:
        common["origin"] = {**{k: origin[k][rows] for k in ("sample", "file", "entry", "item")},
                            "samples": origin["samples"], "files": origin["files"]}
    if settings.objective == "regression":
        names = columns["target_names"] or [f"target_{i}" for i in range(pred.shape[1])]
        target = (columns["targets"][rows] if columns["targets"] is not None
                  else np.full(pred.shape, np.nan, np.float32))
        write_predictions(path, **common, target=target, target_names=names, **kwargs)
    else:
        write_predictions(path, **common, label=columns["labels"][rows], positive=columns.get("positive"), **kwargs)


def _strict(value: Any) -> Any:
    """Plain JSON: numpy numbers as Python numbers, NaN and infinities as null."""
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass
class Removed:
    """Outputs :func:`remove_stale_outputs` took away: regenerated ones and stale ones."""

    regenerated: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)


def _is_predictions_file(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("schema") == PREDICTIONS_SCHEMA
    except OSError:
        return False


def remove_stale_outputs(out_dir: str | os.PathLike, *, splits: Sequence[str], samples: Sequence[str],
                         folds: Sequence[int], export_formats: Sequence[str]) -> Removed:
    """Remove what Predict rewrites (``metrics.json``, ``report.html``, ``plots/``) and what the config no
    longer produces: predictions files of splits and predict samples it does not have (``out_of_fold.h5``
    is the train split's), exported ``models/fold_<k>.*`` of folds or formats it does not train or
    export. Files that are not predictions files are left alone. Each removal is logged."""
    out_dir = Path(out_dir)
    removed = Removed()
    if not out_dir.is_dir():
        return removed
    for name in ("metrics.json", "report.html"):
        path = out_dir / name
        if path.is_file():
            path.unlink()
            removed.regenerated.append(path)
    if (out_dir / "plots").is_dir():
        shutil.rmtree(out_dir / "plots")
        removed.regenerated.append(out_dir / "plots")
    wanted = {"out_of_fold.h5", *(f"{s}.h5" for s in splits if s != "train"), *(f"sample_{n}.h5" for n in samples)}
    for path in sorted(out_dir.glob("*.h5")):
        if path.name not in wanted and _is_predictions_file(path):
            path.unlink()
            removed.stale.append(path)
    models = out_dir / "models"
    if models.is_dir():
        keep = {f"fold_{k}{EXPORT_SUFFIXES[f]}" for k in folds for f in export_formats if f in EXPORT_SUFFIXES}
        for path in sorted(models.iterdir()):
            if path.is_file() and re.fullmatch(r"fold_\d+\..+", path.name) and path.name not in keep:
                path.unlink()
                removed.stale.append(path)
    for path in removed.regenerated:
        log.info("Predict: removed %s (rewritten by this run)", path)
    for path in removed.stale:
        log.warning("Predict: removed stale %s (the config no longer produces it)", path)
    return removed


@dataclass(frozen=True)
class ReportInputs:
    """What the report shows beside Predict's own results: its title, the selections files (cutflow),
    the resampling plots and the fold models' ``epochs.csv`` (learning curves)."""

    title: str
    selections: Sequence[Path] = ()
    resample_plots: Sequence[Path] = ()
    epochs_csv: Sequence[Path] = ()


def run_predict(out_dir: str | os.PathLike, *, settings: PredictSettings, models: Mapping[int, str | os.PathLike],
                splits: Mapping[str, str | os.PathLike], samples: Mapping[str, str | os.PathLike],
                ensemble_mode: str, batch_size: int, export_formats: Sequence[str], config_digest: str,
                created_by: str, report: ReportInputs,
                progress: Callable[[int, int, str], None] = lambda done, total, message: None) -> dict[str, Any]:
    """Predict end to end: load the fold models (``models``: fold -> model file), predict the train
    split out of fold and the other ``splits`` and the predict ``samples`` (name -> train file) with
    the fold ensemble, export the models, write metrics, plots, ``report.html`` and the predictions
    files (``out_of_fold.h5`` last). Returns the metrics. ``progress(steps done, steps, message)``
    is called as each step starts: the out-of-fold predictions, each other split, each sample, the
    outputs."""
    from tracerflow.evaluate.export import export_models
    from tracerflow.evaluate.report import summed_cutflow, with_samples, write_report
    from tracerflow.io.model_file import load_model

    out_dir = Path(out_dir)
    loaded = {k: load_model(path) for k, path in models.items()}
    fold_models = {k: model for k, (model, _) in loaded.items()}
    attrs = {k: a for k, (_, a) in loaded.items()}
    losses = {k: float(a["best_loss"]) for k, a in attrs.items()}
    options = {"batch_size": batch_size, "settings": settings, "model_attrs": attrs}
    others = [split for split in splits if split != "train"]
    steps = 2 + len(others) + len(samples)
    progress(0, steps, f"Predict: out-of-fold predictions of the train split by {len(fold_models)} fold models")
    oof = out_of_fold(fold_models, splits["train"], **options)
    ensembles = {}
    for i, split in enumerate(others):
        progress(1 + i, steps, f"Predict: split {split} with the ensemble of {len(fold_models)} folds")
        ensembles[split] = fold_ensemble(fold_models, losses, splits[split], mode=ensemble_mode, **options)
    scored = {}
    for i, (name, path) in enumerate(samples.items()):
        progress(1 + len(others) + i, steps, f"Predict: sample {name} with the ensemble of {len(fold_models)} folds")
        scored[name] = fold_ensemble(fold_models, losses, path, mode=ensemble_mode, **options)
    progress(steps - 1, steps, "Predict: exports, metrics, plots, report and predictions files")
    n_jet_vars, n_track_vars = input_sizes(splits["train"])
    export_models(fold_models, out_dir / "models", export_formats, n_jet_vars=n_jet_vars, n_track_vars=n_track_vars)
    epochs_csv = [Path(p) for p in report.epochs_csv if Path(p).exists()]

    def write(metrics: dict[str, Any], figures: list[Figure]) -> None:
        write_report(out_dir / "report.html", title=report.title, cutflow=summed_cutflow(report.selections),
                     resample_plots=list(report.resample_plots),
                     learning_curves=out_dir / "plots" / "learning_curves.png" if epochs_csv else None,
                     figures=figures, metrics=with_samples(metrics))

    return write_predict_outputs(out_dir, oof=oof, ensembles=ensembles, settings=settings, epochs_csv=epochs_csv,
                                 config_digest=config_digest, created_by=created_by, samples=scored,
                                 before_target=write)
