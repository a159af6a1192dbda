"""WriteTrainSample as one call: read a resampled split, fix its scale dict, write its files.

The task and the benchmark both call :func:`write_train_sample`, so what is measured is what runs.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from tracerflow.memory import collector_paused
from tracerflow.write.columns import Columns, train_columns  # noqa: F401  (train_columns: imported from here too)
from tracerflow.write.fold_file import write_folds
from tracerflow.write.train_chunks import TrainChunks
from tracerflow.write.scaling import GROUPS, ScaleAccumulator, write_scale_dict
from tracerflow.write.umami_file import ID_DTYPES, write_umami


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
                       config_digest: str, created_by: str, attrs: Mapping[str, Any] | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> WriteTimes:
    """Write the umami file and/or fold file of one resampled split, as the ``write`` block says;
    ``progress(file kind, jets written, jets)`` as each pass over the jets goes.

    Without ``scale_dict`` the split's own jets define it (the train split), and it is also
    written to ``scale_dict_json`` when given; otherwise ``scale_dict`` (the train split's) is used.
    Python's garbage collector is paused meanwhile (:func:`~tracerflow.memory.collector_paused`).
    """
    times = WriteTimes()
    common = {"config_digest": config_digest, "created_by": created_by, "compression": write["compression"],
              "attrs": {**dict(attrs or {}), "n_folds": write["n_folds"]}}
    with TrainChunks(resampled_path, columns, n_folds=write["n_folds"], seed=seed,
                     chunk_size=write["chunk_size"]) as chunks, ThreadPoolExecutor(2, "scale") as pool:
        classes = chunks.file.classes
        common["attrs"]["sources"] = [list(s) for s in chunks.file.sources]
        start = time.perf_counter()
        fitting: ScaleDictBeingFitted | None = None
        if scale_dict is None:
            fitting = ScaleDictBeingFitted(pool, chunks, scale_accumulator(write, columns))
        if umami_path is not None:
            chunks.watch = (lambda done, total: progress("umami file", done, total)) if progress else None
            write_umami(umami_path, chunks, class_names=classes, jet_vars=columns.jet_vars,
                        track_vars=columns.track_vars, scale_dict=scale_dict if fitting is None else fitting,
                        track_label_names=columns.track_labels, add_label_names=columns.add_labels,
                        target_names=columns.targets, id_names=tuple(ID_DTYPES),
                        precision=write["precision"], concat_jet_tracks=write["concat_jet_tracks"],
                        max_tracks=columns.max_tracks, expected_jets=len(chunks), groups=write["groups"], **common)
        if fitting is not None:
            scale_dict, ready = fitting.result()
            if scale_dict_json is not None:
                write_scale_dict(scale_dict_json, scale_dict)
            times.seconds["scale"] = ready - start
            start = max(start, ready)
        if umami_path is not None:
            times.seconds["umami"] = time.perf_counter() - start
        if folds_path is not None:
            start = time.perf_counter()
            chunks.watch = (lambda done, total: progress("fold file", done, total)) if progress else None
            write_folds(folds_path, chunks, n_folds=write["n_folds"], cont_feats=columns.jet_vars,
                        targ_feats=(*(columns.targets or ("label",)), *columns.add_labels),
                        matrix_feats=columns.track_vars,
                        scale_dict=scale_dict, class_names=classes, max_tracks=columns.max_tracks, **common)
            times.seconds["folds"] = time.perf_counter() - start
        times.jets = len(chunks)
    return times


class ScaleDictBeingFitted(Mapping[str, Mapping[str, Any]]):
    """The scale dict of every jet of ``chunks``, its two groups fitted on threads of ``pool``:
    reading a group waits for that group only. Track variables come from the resampled file's
    float16 pattern counts in a few milliseconds; jet variables need a pass over the jets, so
    the train file's tracks can be written while that pass runs."""

    def __init__(self, pool: ThreadPoolExecutor, chunks: TrainChunks, accumulator: ScaleAccumulator) -> None:
        self._accumulator = accumulator
        self._ready: dict[str, float] = {}
        self._groups = {"tracks": pool.submit(self._fit_tracks, chunks), "jets": pool.submit(self._fit_jets, chunks)}

    def _fit_tracks(self, chunks: TrainChunks) -> dict[str, Any]:
        counted = chunks.track_half_counts()
        if counted is None:
            for _, tracks in chunks.inputs(jets=False):
                self._accumulator.update_columns({}, tracks)
        for var, counts in (counted or {}).items():
            self._accumulator.add_half_counts("tracks", var, counts)
        return self._finish("tracks")

    def _fit_jets(self, chunks: TrainChunks) -> dict[str, Any]:
        for jets, _ in chunks.inputs(tracks=False):
            self._accumulator.update_columns(jets, {})
        return self._finish("jets")

    def _finish(self, group: str) -> dict[str, Any]:
        entries = self._accumulator.group_result(group)
        self._ready[group] = time.perf_counter()
        return entries

    def __getitem__(self, group: str) -> Mapping[str, Any]:
        return self._groups[group].result()

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def result(self) -> tuple[dict[str, Any], float]:
        """The whole scale dict, once both groups are fitted, and the ``time.perf_counter()`` then."""
        scale_dict = {group: dict(self[group]) for group in GROUPS}
        return scale_dict, max(self._ready.values())
