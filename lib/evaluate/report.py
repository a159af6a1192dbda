"""The analysis report: one self-contained HTML page (images embedded) that a physicist reads at a glance.

Sections: cutflow summed over every selections file, resampling before/after plots, learning
curves per fold, ROC against the Bayes-optimal discriminant, discriminant per flavour, and the
metrics table (out-of-fold mean +- spread over folds, ensembles, Bayes optimum).
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tracerflow.io.selections_file import read_cutflow

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child{text-align:left}img{max-width:100%;margin:.5em 0}h2{margin-top:2em}")


REPORT_ROCS = {"Light-jet rejection vs b-jet efficiency": "roc_light.png",
               "c-jet rejection vs b-jet efficiency": "roc_c.png",
               "ROC: light-jet vs b-jet efficiency": "roc.png"}

def summed_cutflow(paths: Sequence[str | os.PathLike]) -> list[tuple[str, int, float]]:
    """The cutflow of several selections files, summed cut by cut."""
    total: dict[str, list[float]] = {}
    for path in paths:
        for name, passed, weighted in read_cutflow(path):
            row = total.setdefault(name, [0, 0.0])
            row[0] += passed
            row[1] += weighted
    return [(name, int(p), float(w)) for name, (p, w) in total.items()]


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    oof = metrics["out_of_fold"]
    summary = oof.get("summary", {})
    ensembles = metrics.get("ensembles", {})
    header = ["metric", "out of fold (mean &plusmn; std)", *[f"ensemble, {s}" for s in ensembles], "Bayes optimal (train)"]
    rows = []
    for name in sorted(summary):
        cells = [html.escape(name), f"{summary[name]['mean']:.4g} &plusmn; {summary[name]['std']:.2g}"]
        cells += [_number(block["model"].get(name, "")) for block in ensembles.values()]
        cells.append(_number(oof["all"].get("bayes_optimal", {}).get(name, "")))
        rows.append(cells)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path: str | os.PathLike, *, title: str, cutflow: Sequence[tuple[str, int, float]],
                 resample_plots: Sequence[Path], learning_curves: Path | None, roc: Mapping[str, Path],
                 discriminant: Path | None,
                 metrics: Mapping[str, Any]) -> Path:
    """Write the HTML report atomically and return its path; ``roc`` maps headings to ROC plots."""
    path = Path(path)
    cut_rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{p:,}</td><td>{w:,.1f}</td></tr>" for n, p, w in cutflow)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<h2>Cutflow</h2><table><tr><th>cut</th><th>passed</th><th>weighted</th></tr>", cut_rows, "</table>",
        "<h2>Resampling</h2>", *[_image(p) for p in resample_plots],
        "<h2>Learning curves</h2>", _image(learning_curves) if learning_curves else "<p>no learning curves</p>",
        *[part for heading, plot in roc.items() if plot.exists() for part in (f"<h2>{html.escape(heading)}</h2>",
                                                                              _image(plot))],
        "<h2>Discriminant per flavour</h2>", _image(discriminant) if discriminant else "<p>no predictions</p>",
        f"<h2>Metrics</h2><p>b-tagging discriminant with f<sub>c</sub> = {metrics['fc']}</p>", _metrics_table(metrics),
        "</body></html>\n",
    ]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
