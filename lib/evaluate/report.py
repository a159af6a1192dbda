"""The analysis report: one self-contained HTML page (images embedded) that a physicist reads at a glance.

Its wording comes from the metrics (``metrics.json``): the objective, the configured class or
target names, the row level (``jets``, ``events``, ...) and the discriminant, if any. Sections,
each left out when it has nothing to show: what was evaluated, the cutflow summed over every
selections file, resampling before/after plots, learning curves per fold, the figures Predict drew
(ROC curves, score distributions, calibration, or predicted-vs-true and binned resolution), the
metrics table (out-of-fold mean +- spread over folds, ensembles and predict samples, the
configured reference score on the out-of-fold rows, headed by its name, and the toy's
Bayes-optimal reference where it exists) and the out-of-fold confusion matrix. A null metric is
shown as ``n/a (reason)``.
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tracerflow.io.atomic import write_atomic
from tracerflow.io.selections_file import read_cutflow

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child{text-align:left}img{max-width:100%;margin:.5em 0}h2{margin-top:2em}"
         ".na{color:#888;font-size:90%}")


def summed_cutflow(paths: Sequence[str | os.PathLike]) -> list[tuple[str, int, float]]:
    """The cutflow of several selections files, summed cut by cut."""
    total: dict[str, list[float]] = {}
    for path in paths:
        for name, passed, weighted in read_cutflow(path):
            row = total.setdefault(name, [0, 0.0])
            row[0] += passed
            row[1] += weighted
    return [(name, int(p), float(w)) for name, (p, w) in total.items()]


def with_samples(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics whose ensemble columns also hold the predict samples' (``sample <name>``), as the table shows them."""
    samples = {f"sample {name}": block for name, block in metrics.get("samples", {}).items()}
    return {**metrics, "ensembles": {**metrics.get("ensembles", {}), **samples}}


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _na(reason: str | None) -> str:
    return f'<span class="na">n/a ({html.escape(reason or "not computed")})</span>'


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _cell(block: Mapping[str, Any] | None, part: str, name: str) -> str:
    """One metric of a result block: its value, or n/a with the block's recorded reason."""
    if block is None or name not in block.get(part, {}):
        return ""
    value = block[part][name]
    if value is None:
        return _na(block.get("null_reasons", {}).get(f"{part}.{name}"))
    return _number(value)


def _summary_cell(entry: Mapping[str, Any]) -> str:
    if entry["mean"] is None:
        return _na(entry.get("reason"))
    text = f"{entry['mean']:.4g} &plusmn; {entry['std']:.2g}"
    if entry.get("reason"):
        text += f' <span class="na">({html.escape(entry["reason"])})</span>'
    return text


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}"


def _describe(metrics: Mapping[str, Any]) -> str:
    """What was evaluated, in the analysis's own names."""
    level = html.escape(str(metrics.get("row_level", "rows")))
    objective = metrics.get("objective", "multiclass")
    if objective == "regression":
        targets = ", ".join(html.escape(t) for t in metrics.get("targets") or [])
        text = f"Regression of {targets}; the rows are {level}."
    else:
        classes = ", ".join(html.escape(c) for c in metrics.get("classes", []))
        kind = "Binary" if objective == "binary" else "Multiclass"
        text = f"{kind} classification of {level} into the classes {classes}."
        if objective == "binary" and metrics.get("positive"):
            text += f" The model scores p({html.escape(metrics['positive'])})."
    oof = metrics["out_of_fold"]
    folds = ", ".join(str(k) for k in oof.get("per_fold", {}))
    rows = oof["all"]["rows"]
    text += f" Out of fold: {_plural(rows, level)}" + (f" (folds {folds})." if folds else ".")
    for name, block in metrics.get("ensembles", {}).items():
        text += f" Ensemble, {html.escape(name)}: {_plural(block['rows'], level)}."
    return f"<p>{text}</p>" + _describe_discriminant(metrics) + _describe_reference(metrics)


def _describe_reference(metrics: Mapping[str, Any]) -> str:
    reference = metrics.get("reference")
    if not reference:
        return ""
    classes = list(metrics.get("classes", []))
    positive = reference.get("positive")
    other = next((c for c in classes if c != positive), None)
    against = f" against {html.escape(other)}" if other else ""
    return (f"<p>Reference: {html.escape(reference['name'])}, the stored score {html.escape(reference['score'])} "
            f"ranking {html.escape(str(positive))}{against}; the table shows it on the out-of-fold rows, "
            f"metrics.json on every fold, split and sample.</p>")


def _describe_discriminant(metrics: Mapping[str, Any]) -> str:
    disc = metrics.get("discriminant")
    if not disc:
        return ""
    signal = html.escape(disc["signal"])
    classes = metrics.get("classes", [])
    fractions = disc.get("fractions", {})
    terms = [f"{f:g}&nbsp;p({html.escape(c)})" for c, f in fractions.items()]
    others = [c for c in classes if c != disc["signal"] and c not in fractions]
    if others:
        rest = " + ".join(f"p({html.escape(c)})" for c in others)
        share = 1.0 - sum(fractions.values())
        terms.append(f"{share:g}&nbsp;({rest})" if len(others) > 1 else f"{share:g}&nbsp;{rest}")
    wps = ", ".join(f"{100 * wp:g}%" for wp in disc.get("working_points", []))
    return (f"<p>Discriminant D({signal}) = log(p({signal}) / ({' + '.join(terms)})); background rejections "
            f"at {signal} efficiencies {wps}.</p>")


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    oof = metrics["out_of_fold"]
    summary = oof.get("summary", {})
    ensembles = metrics.get("ensembles", {})
    bayes = "bayes_optimal" in oof["all"]
    reference = "reference" in oof["all"] and metrics.get("reference")
    names = list(summary) or list(oof["all"].get("model", {}))
    if not names:
        return ""
    header = ["metric", "out of fold (mean &plusmn; std over folds)" if summary else "out of fold",
              *[f"ensemble, {html.escape(s)}" for s in ensembles]]
    if reference:
        header.append(f"{html.escape(metrics['reference']['name'])} (out of fold)")
    if bayes:
        header.append("Bayes optimal (train)")
    rows = []
    for name in sorted(names):
        cells = [html.escape(name), _summary_cell(summary[name]) if name in summary else _cell(oof["all"], "model", name)]
        cells += [_cell(block, "model", name) for block in ensembles.values()]
        if reference:
            cells.append(_cell(oof["all"], "reference", name))
        if bayes:
            cells.append(_cell(oof["all"], "bayes_optimal", name))
        rows.append(cells)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h2>Metrics</h2><table><tr>{head}</tr>{body}</table>"


def _confusion_table(metrics: Mapping[str, Any]) -> str:
    matrix = metrics["out_of_fold"]["all"].get("confusion_matrix")
    if not matrix or not metrics["out_of_fold"]["all"]["rows"]:
        return ""
    classes = matrix["classes"]
    reasons = metrics["out_of_fold"]["all"].get("null_reasons", {})
    head = "<th>true \\ predicted</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    body = []
    for name in classes:
        row = matrix["fractions"][name]
        cells = ([_number(v) for v in row] if row is not None
                 else [_na(reasons.get(f"confusion_matrix.fractions.{name}"))] + [""] * (len(classes) - 1))
        body.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    how = html.escape(matrix.get("predicted", "argmax"))
    return (f"<h2>Confusion matrix (out of fold)</h2><p>Weighted fraction of each true class per predicted class "
            f"(predicted: {how}).</p><table><tr>{head}</tr>{''.join(body)}</table>")


def write_report(path: str | os.PathLike, *, title: str, cutflow: Sequence[tuple[str, int, float]],
                 resample_plots: Sequence[Path], learning_curves: Path | None,
                 figures: Sequence[tuple[str, Path]], metrics: Mapping[str, Any]) -> Path:
    """Write the HTML report atomically and return its path; ``figures`` are (heading, PNG) pairs in
    order (missing files are left out), ``metrics`` the content of ``metrics.json`` (with
    :func:`with_samples` for the predict samples' columns)."""
    path = Path(path)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        _describe(metrics),
    ]
    if cutflow:
        cut_rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{p:,}</td><td>{w:,.1f}</td></tr>" for n, p, w in cutflow)
        parts += ["<h2>Cutflow</h2><table><tr><th>cut</th><th>passed</th><th>weighted</th></tr>", cut_rows, "</table>"]
    resample_plots = [p for p in resample_plots if Path(p).exists()]
    if resample_plots:
        parts += ["<h2>Resampling</h2>", *[_image(Path(p)) for p in resample_plots]]
    if learning_curves is not None and Path(learning_curves).exists():
        parts += ["<h2>Learning curves</h2>", _image(Path(learning_curves))]
    for heading, plot in figures:
        if Path(plot).exists():
            parts += [f"<h2>{html.escape(heading)}</h2>", _image(Path(plot))]
    parts += [_metrics_table(metrics), _confusion_table(metrics), "</body></html>\n"]
    write_atomic(path, "".join(parts))
    return path
