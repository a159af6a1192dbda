"""The train file of a sample named in ``predict.samples``, which the fold models score but never train on.

Every selected jet of the sample whose label is one of ``resample.classes`` is kept once, in file
and row order, whatever split its event hash would draw, and scaled with the train split's scale
dict. The jets are gathered into the resampled-split layout, so WriteTrainSample's reader and
writer make the file.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from tracerflow.config.load import Config
from tracerflow.io.resampled_file import INDEX_COLUMNS
from tracerflow.resample.gather import source_paths, write_resampled
from tracerflow.resample.inputs import selection_chunks
from tracerflow.write.train_sample import train_columns, write_train_sample


def sample_rows(selections: Sequence[str | os.PathLike], label: str, classes: Mapping[str, int], *,
                chunk_size: int, weight: str | None = None) -> dict[str, np.ndarray]:
    """Resampled-layout rows of every jet of ``selections`` whose ``label`` value is a class, in file and
    row order: one copy, class index as label, weight 1 times the ``weight`` output when given."""
    values = np.asarray(list(classes.values()))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*INDEX_COLUMNS, "label", "weight")}
    for chunk in selection_chunks(selections, [label], chunk_size, weight=weight)():
        match = np.asarray(chunk[label])[:, None] == values[None, :]
        keep = match.any(axis=1)
        for name in ("source", "row", "hash", "item"):
            parts[name].append(chunk[name][keep])
        parts["copy"].append(np.zeros(int(keep.sum()), np.int32))
        parts["label"].append(match[keep].argmax(axis=1).astype(np.int16))
        parts["weight"].append(chunk["weight"][keep] if weight else np.ones(int(keep.sum()), np.float32))
    return {name: np.concatenate(p) if p else np.zeros(0, np.int64) for name, p in parts.items()}


def write_predict_sample(cfg: Config, sample: str, *, umami_path: str | os.PathLike, jets_path: str | os.PathLike,
                         scale_dict: Mapping[str, Any], config_digest: str, created_by: str) -> int:
    """Write ``jets_path`` (which jets, resampled layout) and ``umami_path`` (their train file); the jet count."""
    block = cfg["resample"]
    sources = [(sample, f.logical) for f in cfg.sample_files(sample)]
    paths = source_paths(cfg.output_root, sources)
    rows = sample_rows([p.selections for p in paths], block["label"], block["classes"],
                       chunk_size=block["chunk_size"], weight=block["weight"])
    attrs = {"sample": sample}
    write_resampled(jets_path, rows, split="all", classes=list(block["classes"]), sources=sources, paths=paths,
                    config_digest=config_digest, created_by=created_by, attrs={**attrs, "method": "none"})
    write_train_sample(jets_path, train_columns(cfg), cfg["write"], seed=cfg.seed, umami_path=umami_path,
                       folds_path=None, scale_dict=scale_dict, config_digest=config_digest, created_by=created_by,
                       attrs=attrs)
    return len(rows["row"])
