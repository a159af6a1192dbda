"""Evaluation plots drawn on the Agg canvas (no pyplot state) and saved without a Software stamp, so equal inputs give equal PNG bytes.

Curve styles in :func:`plot_roc` follow the curve names: a name starting with ``fold`` is a
single fold model (thin line), one containing ``bayes`` the Bayes-optimal reference (black,
dashed), anything else (the ensemble) a thick solid line.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 100
_SIZE = (6.4, 4.8)


def _figure() -> tuple[Figure, object]:
    """A fresh figure with one axis, attached to its own Agg canvas."""
    fig = Figure(figsize=_SIZE, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """Save as PNG with no Software metadata, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})


def _roc_style(name: str) -> dict[str, object]:
    """Line style for a curve, chosen by the naming convention in the module docstring."""
    lower = name.lower()
    if lower.startswith("fold"):
        return {"linewidth": 0.8, "alpha": 0.6}
    if "bayes" in lower:
        return {"color": "black", "linestyle": "--", "linewidth": 1.5}
    return {"linewidth": 2.0}


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *,
             xlabel: str = "b-jet efficiency", ylabel: str = "background rejection",
             title: str | None = None, rejection: bool = True) -> None:
    """Rejection against signal efficiency on a log y axis, one line per named curve (folds, ensemble, Bayes);
    with ``rejection=False`` the classic ROC: background efficiency (1 / rejection) on linear axes."""
    fig, ax = _figure()
    for name, (sig_eff, rej) in curves.items():
        sig_eff = np.asarray(sig_eff, dtype=np.float64)
        rej = np.asarray(rej, dtype=np.float64)
        keep = np.isfinite(rej) & (rej > 0)
        ax.plot(sig_eff[keep], rej[keep] if rejection else 1.0 / rej[keep], label=name, **_roc_style(name))
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


def plot_discriminant(disc: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                      weights: np.ndarray | None, path: str | os.PathLike, *, bins: int = 50,
                      xlabel: str = "tagger discriminant") -> None:
    """Unit-area weighted histograms of the discriminant per true flavour, log y axis."""
    disc = np.asarray(disc, dtype=np.float64)
    labels = np.asarray(labels)
    w = np.ones(len(disc)) if weights is None else np.asarray(weights, dtype=np.float64)
    finite = np.isfinite(disc)
    edges = np.histogram_bin_edges(disc[finite], bins=bins) if finite.any() else np.linspace(0, 1, bins + 1)
    fig, ax = _figure()
    for index, name in enumerate(class_names):
        mask = finite & (labels == index)
        if not mask.any():
            continue
        ax.hist(disc[mask], bins=edges, weights=w[mask], density=True, histtype="step", label=name)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("normalised entries")
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
