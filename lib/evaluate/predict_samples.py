"""The train file of a sample named in ``predict.samples``, which the fold models score but never train on.

Every selected row of the sample is kept once, in file and row order, whatever split its event
hash would draw, and scaled with the train split's scale dict: a sample with a class (by
``samples.<name>.label`` or ``resample.classes``) has it on every row; a sample classed by the
label column keeps the rows whose label is a class; a sample with neither (collision data) keeps
every row, with label -1 (unknown). The rows are gathered into the resampled-split layout, so
WriteTrainSample's reader and writer make the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tracerflow.config.load import Config
from tracerflow.io.resampled_file import INDEX_COLUMNS
from tracerflow.resample.classes import resample_spec
from tracerflow.resample.gather import SourcePaths, write_resampled
from tracerflow.resample.inputs import selection_chunks
from tracerflow.write.train_sample import train_columns, write_train_sample


def sample_rows(selections: Sequence[str | os.PathLike], label: str | None, classes: Mapping[str, int], *,
                chunk_size: int, weight: str | None = None, fixed: int | None = None) -> dict[str, np.ndarray]:
    """Resampled-layout rows of ``selections`` in file and row order: one copy, class index as label,
    weight 1 times the ``weight`` output when given. With ``fixed`` (a label value) every row has
    that class; else, with a ``label`` column, the rows whose value is a class; else every row,
    label -1."""
    values = np.asarray(list(classes.values()))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*INDEX_COLUMNS, "label", "weight")}
    read = [label] if label is not None and fixed is None else []
    for chunk in selection_chunks(selections, read, chunk_size, weight=weight)():
        n = len(chunk["row"])
        if fixed is not None:
            match = np.broadcast_to(values[None, :] == fixed, (n, len(values)))
        elif read:
            match = np.asarray(chunk[label])[:, None] == values[None, :]
        else:
            match = None
        keep = match.any(axis=1) if match is not None else np.ones(n, bool)
        for name in ("source", "row", "hash", "item"):
            parts[name].append(chunk[name][keep])
        parts["copy"].append(np.zeros(int(keep.sum()), np.int32))
        parts["label"].append(match[keep].argmax(axis=1).astype(np.int16) if match is not None
                              else np.full(n, -1, np.int16))
        parts["weight"].append(chunk["weight"][keep] if weight else np.ones(int(keep.sum()), np.float32))
    return {name: np.concatenate(p) if p else np.zeros(0, np.int64) for name, p in parts.items()}


def write_predict_sample(cfg: Config, sample: str, *, sources: Sequence[tuple[str, str]],
                         selections: Sequence[Path], graphs: Sequence[Path] | None, umami_path: str | os.PathLike,
                         jets_path: str | os.PathLike, scale_dict: Mapping[str, Any], config_digest: str,
                         created_by: str) -> int:
    """Write ``jets_path`` (which jets, resampled layout) and ``umami_path`` (their train file) of the
    jets of ``sources`` ((sample, logical file) pairs, whose selections and graphs files are
    ``selections[i]`` and ``graphs[i]``; no graphs in an analysis without them); the jet count."""
    block = cfg["resample"]
    spec, classes = resample_spec(cfg)
    paths = [SourcePaths(Path(sel), Path(graphs[i]) if graphs is not None else None) for i, sel in enumerate(selections)]
    rows = sample_rows([p.selections for p in paths], spec.label if classes.reads_column else None, spec.classes,
                       chunk_size=block["chunk_size"], weight=block["weight"], fixed=classes.value_of_sample(sample))
    attrs = {"sample": sample}
    write_resampled(jets_path, rows, split="all", classes=list(classes.names), sources=sources, paths=paths,
                    config_digest=config_digest, created_by=created_by, attrs={**attrs, "method": "none"})
    write_train_sample(jets_path, train_columns(cfg), cfg["write"], seed=cfg.seed, umami_path=umami_path,
                       folds_path=None, scale_dict=scale_dict, config_digest=config_digest, created_by=created_by,
                       attrs=attrs)
    return len(rows["row"])
