"""The Resample stage's report: counts, duplicates, drops and agreement with the target, plus plots.

:func:`resample_report` gives a JSON-ready dict per split; :func:`plot_report` draws the
before/after 1-D distributions per split and variable. Plots go through matplotlib's Agg
canvas directly (no pyplot state, no backend switch) and are saved without the ``Software``
tag, so the same results give byte-identical PNGs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tracerflow.io.atomic import replacing
from tracerflow.resample.compare import CHI2_DESCRIPTION, KS_DESCRIPTION, chi2_two_sample, ks_binned, project
from tracerflow.resample.spec import ResampleSpec
from tracerflow.resample.stream import SplitSummary

_LOG_SCALE_SPAN = 100.0


def resample_report(results: Mapping[str, SplitSummary], spec: ResampleSpec) -> dict[str, Any]:
    """Per split and class: counts before/after, duplicates, drops, clipping and agreement with the target."""
    return {
        "method": spec.method,
        "target": spec.target,
        "classes": dict(spec.classes),
        "variables": {name: [float(e) for e in edges] for name, edges in spec.variables.items()},
        "seed": int(spec.seed),
        "split_seed": spec.assignment_seed,
        "max_upsampling_ratio": spec.max_upsampling_ratio,
        "upscale_pdf": spec.upscale_pdf,
        "tests": {"chi2": CHI2_DESCRIPTION, "ks": KS_DESCRIPTION},
        "splits": {name: _split_report(result, spec) for name, result in results.items()},
    }


def agreement(result: SplitSummary, spec: ResampleSpec) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variable and non-target class: chi2 and KS of its 1-D projection against the target's, before and after."""
    target = spec.target_index
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, variable in enumerate(spec.variables):
        before = project(result.hist_before, axis).astype(np.float64)
        after = project(result.hist_after_weighted, axis)
        after_var = project(result.hist_after_sumw2, axis)
        per_class = {}
        for c, name in enumerate(spec.class_names):
            if c == target:
                continue
            per_class[name] = {
                "before": _test(before[c], before[target], before[c], before[target]),
                "after": _test(after[c], after[target], after_var[c], after_var[target]),
            }
        out[variable] = per_class
    return out


def plot_report(results: Mapping[str, SplitSummary], spec: ResampleSpec, out_dir: str | Path) -> list[Path]:
    """Write one PNG per split and variable: normalised 1-D distributions per class, before | after."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split, result in results.items():
        for axis, (variable, edges) in enumerate(spec.variables.items()):
            figure = Figure(figsize=(10, 4), dpi=100)
            FigureCanvasAgg(figure)
            panels = figure.subplots(1, 2, sharey=True)
            histograms = (
                ("before", project(result.hist_before, axis).astype(np.float64)),
                ("after", project(result.hist_after_weighted, axis)),
            )
            widths = np.diff(edges)
            for ax, (stage, hist) in zip(panels, histograms):
                positive = []
                for c, name in enumerate(spec.class_names):
                    total = hist[c].sum()
                    density = hist[c] / total / widths if total > 0 else np.zeros_like(widths)
                    positive.append(density[density > 0])
                    ax.stairs(density, edges, label=f"{name} ({total:.0f})", linewidth=1.5)
                values = np.concatenate(positive)
                if values.size and values.max() > _LOG_SCALE_SPAN * values.min():
                    ax.set_yscale("log")
                ax.set_xlabel(variable)
                ax.set_title(f"{split}: {stage}" + (f" ({result.method})" if stage == "after" else ""))
                ax.legend(fontsize="small")
            panels[0].set_ylabel("normalised jets / bin width")
            figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.05)
            path = out_dir / f"resample_{split}_{variable}.png"
            with replacing(path) as tmp:
                figure.savefig(tmp, format="png", metadata={"Software": None})
            written.append(path)
    return written


def _split_report(result: SplitSummary, spec: ResampleSpec) -> dict[str, Any]:
    """The report block of one split."""
    after = result.after
    weighted = result.weighted_after
    in_range = result.hist_before.reshape(len(spec.classes), -1).sum(axis=1)
    classes = {}
    for c, name in enumerate(spec.class_names):
        unique = int(result.unique[c])
        classes[name] = {
            "available": int(result.available[c]),
            "in_range": int(in_range[c]),
            "out_of_range_dropped": 0 if not result.resampled else int(result.out_of_range[c]),
            "requested": float(result.requested[c]),
            "after": int(after[c]),
            "weighted_after": float(weighted[c]),
            "unique": unique,
            "duplicates": int(after[c]) - unique,
            "unique_fraction": _ratio(unique, after[c]),
            "used_fraction": _ratio(unique, result.available[c]),
            "clipped_bins": int(result.clipped_bins[c]),
            "empty_bins": int(result.empty_bins[c]),
            "max_ratio": float(result.ratio[c].max()) if result.ratio[c].size else 0.0,
        }
    return {
        "resampled": result.resampled,
        "method": result.method,
        "sampling_fraction": None if math.isnan(result.sampling_fraction) else float(result.sampling_fraction),
        "rows": len(result),
        "unlabelled_dropped": int(result.unlabelled),
        "out_of_range_dropped": int(result.out_of_range.sum()) if result.resampled else 0,
        "ratio_grid_bins": int(result.ratio_grid_bins),
        "classes": classes,
        "agreement": agreement(result, spec),
    }


def _test(w1: np.ndarray, w2: np.ndarray, var1: np.ndarray, var2: np.ndarray) -> dict[str, Any]:
    """chi2 and KS of one pair of 1-D histograms as JSON-ready values."""
    chi2 = chi2_two_sample(w1, w2, var1, var2)
    return {
        "chi2": _finite(chi2.statistic),
        "ndf": chi2.ndf,
        "p_value": _finite(chi2.p_value),
        "ks": _finite(ks_binned(w1, w2)),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
