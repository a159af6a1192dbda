"""Evaluation plots drawn on the Agg canvas (no pyplot state) and saved without a Software stamp, so equal inputs give equal PNG bytes.

Curve styles in :func:`plot_roc` follow the curve names: a name starting with ``fold`` is a
single fold model (thin line), one named in ``references`` a configured reference score (black,
dash-dotted), one containing ``bayes`` the toy's Bayes-optimal reference (black, dashed), anything
else (the ensemble) a thick solid line.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tracerflow.io.atomic import replacing

_DPI = 100
_SIZE = (6.4, 4.8)


def _figure() -> tuple[Figure, object]:
    """A fresh figure with one axis, attached to its own Agg canvas."""
    fig = Figure(figsize=_SIZE, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """Save as PNG with no Software metadata, atomically, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})


def _roc_style(name: str, references: Sequence[str] = ()) -> dict[str, object]:
    """Line style for a curve, chosen by the naming convention in the module docstring."""
    lower = name.lower()
    if lower.startswith("fold"):
        return {"linewidth": 0.8, "alpha": 0.6}
    if name in references:
        return {"color": "black", "linestyle": "-.", "linewidth": 1.5}
    if "bayes" in lower:
        return {"color": "black", "linestyle": "--", "linewidth": 1.5}
    return {"linewidth": 2.0}


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *,
             xlabel: str = "signal efficiency", ylabel: str = "background rejection",
             title: str | None = None, rejection: bool = True, references: Sequence[str] = ()) -> None:
    """Rejection against signal efficiency on a log y axis, one line per named curve (folds, ensemble, Bayes,
    the ``references``); with ``rejection=False`` the classic ROC: background efficiency (1 / rejection)
    on linear axes."""
    fig, ax = _figure()
    for name, (sig_eff, rej) in curves.items():
        sig_eff = np.asarray(sig_eff, dtype=np.float64)
        rej = np.asarray(rej, dtype=np.float64)
        keep = np.isfinite(rej) & (rej > 0)
        ax.plot(sig_eff[keep], rej[keep] if rejection else 1.0 / rej[keep], label=name,
                **_roc_style(name, references))
    if rejection:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    if curves:
        ax.legend(fontsize="small")
    _save(fig, path)


def plot_class_distributions(values: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                             weights: np.ndarray | None, path: str | os.PathLike, *, bins: int = 50,
                             xlabel: str = "score", value_range: tuple[float, float] | None = None,
                             log: bool = True) -> None:
    """Unit-area weighted histograms of ``values`` per true class (a class whose total weight is not
    positive is left out: it has no unit-area shape); log y axis unless ``log=False``."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    finite = np.isfinite(values)
    if value_range is not None:
        edges = np.linspace(value_range[0], value_range[1], bins + 1)
    elif finite.any():
        edges = np.histogram_bin_edges(values[finite], bins=bins)
    else:
        edges = np.linspace(0, 1, bins + 1)
    fig, ax = _figure()
    drawn = False
    for index, name in enumerate(class_names):
        mask = finite & (labels == index)
        total = w[mask].sum()
        if not mask.any() or total <= 0:
            continue
        counts, _ = np.histogram(values[mask], bins=edges, weights=w[mask])
        ax.stairs(counts / (total * np.diff(edges)), edges, label=name)
        drawn = True
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("normalised entries")
    if drawn:
        ax.legend(fontsize="small")
    _save(fig, path)


def plot_calibration(curves: Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]],
                     path: str | os.PathLike, *, title: str | None = None) -> None:
    """Observed frequency against mean predicted probability per bin, one line per class; null bins skipped."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1.0, label="perfectly calibrated")
    for name, (predicted, observed) in curves.items():
        points = [(p, o) for p, o in zip(predicted, observed) if p is not None and o is not None]
        if points:
            x, y = zip(*points)
            ax.plot(x, y, marker="o", markersize=3, label=name)
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    _save(fig, path)


def plot_pred_vs_true(pred: np.ndarray, true: np.ndarray, weights: np.ndarray | None, path: str | os.PathLike, *,
                      name: str = "target", bins: int = 60) -> None:
    """2-d histogram of predicted against true values (``|w|``-weighted, log colour scale) with the diagonal."""
    from matplotlib.colors import LogNorm

    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    w = np.ones(len(pred)) if weights is None else np.abs(np.asarray(weights, dtype=np.float64))
    ok = np.isfinite(pred) & np.isfinite(true)
    fig, ax = _figure()
    if ok.any():
        low = float(min(pred[ok].min(), true[ok].min()))
        high = float(max(pred[ok].max(), true[ok].max()))
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, bins + 1)
        counts, _, _ = np.histogram2d(true[ok], pred[ok], bins=[edges, edges], weights=w[ok])
        masked = np.ma.masked_less_equal(counts.T, 0)
        if masked.count():
            mesh = ax.pcolormesh(edges, edges, masked, norm=LogNorm(), cmap="viridis")
            fig.colorbar(mesh, ax=ax, label="weighted rows")
        ax.plot([low, high], [low, high], color="red", linestyle="--", linewidth=1.0)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    _save(fig, path)


def plot_binned(edges: Sequence[float], series: Mapping[str, Sequence[float | None]], path: str | os.PathLike, *,
                xlabel: str, ylabel: str) -> None:
    """Values per bin of a variable (bias or resolution per target), drawn at bin centres; null bins skipped."""
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * np.diff(edges)
    fig, ax = _figure()
    for name, values in series.items():
        keep = [i for i, v in enumerate(values) if v is not None]
        if keep:
            ax.errorbar(centres[keep], [values[i] for i in keep], xerr=half[keep], marker="o", markersize=3,
                        linestyle="none", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    _save(fig, path)


def read_learning_curve(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns ``epoch``, ``train_loss``, ``val_loss`` of one fold's epochs CSV."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        return {key: np.array([float(row[key]) for row in rows]) for key in ("epoch", "train_loss", "val_loss")}
    except KeyError as err:
        raise ValueError(f"{path}: missing column {err}; need epoch, train_loss, val_loss") from None


def plot_learning_curves(epochs_csv_paths: Sequence[str | os.PathLike], path: str | os.PathLike) -> None:
    """Training (dashed) and validation (solid) loss per epoch, one colour per fold."""
    fig, ax = _figure()
    for fold, csv_path in enumerate(epochs_csv_paths):
        curve = read_learning_curve(csv_path)
        color = f"C{fold % 10}"
        ax.plot(curve["epoch"], curve["train_loss"], color=color, linestyle="--", label=f"fold {fold} train")
        ax.plot(curve["epoch"], curve["val_loss"], color=color, label=f"fold {fold} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if epochs_csv_paths:
        ax.legend(fontsize="small", ncol=2)
    _save(fig, path)
