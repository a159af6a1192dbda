"""WriteTrainSample as one call: read a resampled split, fix its scale dict, write its files.

The task and the benchmark both call :func:`write_train_sample`, so what is measured is what runs.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

from tracerflow.config.load import Config
from tracerflow.memory import collector_paused
from tracerflow.templates.loader import load_template
from tracerflow.write.fold_file import write_folds
from tracerflow.write.train_chunks import Columns, TrainChunks
from tracerflow.write.scaling import ScaleAccumulator, write_scale_dict
from tracerflow.write.umami_file import write_umami


@dataclass
class WriteTimes:
    """Seconds spent per phase of one :func:`write_train_sample` call, and the jets written.

    The phases follow each other in wall time: ``scale`` until the scale dict is ready,
    ``umami`` from then until the train file is written (it is created, and its first chunk
    read, while the scale dict is still being computed), ``folds`` the fold file after it.
    """

    jets: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def train_columns(cfg: Config) -> Columns:
    """What a train chunk carries, from the ``write`` block (track variables default to every node feature)."""
    write = cfg["write"]
    tracks = write["tracks"]
    track_vars = tracks["variables"]
    if track_vars is None:
        track_vars = list(load_template(cfg, "graph").node_features)
    return Columns(tuple(write["jets"]["variables"]), tuple(write["add_labels"]), tuple(track_vars),
                   tuple(tracks["labels"]), tracks["max_tracks"])


def scale_accumulator(write: Mapping[str, Any], columns: Columns) -> ScaleAccumulator:
    """An empty accumulator for the ``write`` block's variable groups (log, asinh, no_norm)."""
    jets, tracks = write["jets"], write["tracks"]

    def groups(key: str) -> dict[str, list[str]]:
        return {"jets": jets[key], "tracks": tracks[key]}

    return ScaleAccumulator(columns.jet_vars, columns.track_vars, log=groups("log"), asinh=groups("asinh"),
                            no_norm=groups("no_norm"))


@collector_paused()
def write_train_sample(resampled_path: str | os.PathLike, columns: Columns, write: Mapping[str, Any], *, seed: int,
                       umami_path: str | os.PathLike | None, folds_path: str | os.PathLike | None,
                       scale_dict: Mapping[str, Any] | None = None, scale_dict_json: str | os.PathLike | None = None,
                       config_digest: str, created_by: str, attrs: Mapping[str, Any] | None = None) -> WriteTimes:
    """Write the umami file and/or fold file of one resampled split, as the ``write`` block says.

    Without ``scale_dict`` the split's own jets define it (the train split), and it is also
    written to ``scale_dict_json`` when given; otherwise ``scale_dict`` (the train split's) is used.
    Python's garbage collector is paused meanwhile (:func:`~tracerflow.memory.collector_paused`).
    """
    times = WriteTimes()
    common = {"config_digest": config_digest, "created_by": created_by, "compression": write["compression"],
              "attrs": {**dict(attrs or {}), "n_folds": write["n_folds"]}}
    with TrainChunks(resampled_path, columns, n_folds=write["n_folds"], seed=seed,
                     chunk_size=write["chunk_size"]) as chunks, ThreadPoolExecutor(1, "scale") as pool:
        classes = chunks.file.classes
        start = time.perf_counter()
        fitted: Future | None = None
        ready: list[float] = []
        if scale_dict is None:
            fitted = pool.submit(_fit_scale_dict, chunks, write, columns, scale_dict_json)
            fitted.add_done_callback(lambda _: ready.append(time.perf_counter()))
        if umami_path is not None:
            write_umami(umami_path, chunks, class_names=classes, jet_vars=columns.jet_vars,
                        track_vars=columns.track_vars, scale_dict=fitted or scale_dict,
                        track_label_names=columns.track_labels, add_label_names=columns.add_labels,
                        precision=write["precision"], concat_jet_tracks=write["concat_jet_tracks"],
                        max_tracks=columns.max_tracks, expected_jets=len(chunks), **common)
        if fitted is not None:
            scale_dict = fitted.result()
            times.seconds["scale"] = ready[0] - start
            start = ready[0]
        if umami_path is not None:
            times.seconds["umami"] = time.perf_counter() - start
        if folds_path is not None:
            start = time.perf_counter()
            write_folds(folds_path, chunks, n_folds=write["n_folds"], cont_feats=columns.jet_vars,
                        targ_feats=("label", *columns.add_labels), matrix_feats=columns.track_vars,
                        scale_dict=scale_dict, class_names=classes, max_tracks=columns.max_tracks, **common)
            times.seconds["folds"] = time.perf_counter() - start
        times.jets = len(chunks)
    return times


def _fit_scale_dict(chunks: TrainChunks, write: Mapping[str, Any], columns: Columns,
                    json_path: str | os.PathLike | None) -> dict[str, Any]:
    """The scale dict of every jet of ``chunks``, also written to ``json_path`` when given."""
    accumulator = scale_accumulator(write, columns)
    counted = chunks.track_half_counts()
    for jets, tracks in chunks.inputs(tracks=counted is None):
        accumulator.update_columns(jets, tracks)
    for var, counts in (counted or {}).items():
        accumulator.add_half_counts("tracks", var, counts)
    scale_dict = accumulator.result()
    if json_path is not None:
        write_scale_dict(json_path, scale_dict)
    return scale_dict
