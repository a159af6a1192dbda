"""A change in any config block reruns exactly what follows from it, and ``tracerflow show`` names it.

One output directory, one change per step, from the last stage up to the seed, so each step reruns
as little as possible: before each rerun ``show`` must name the changed key with its old and new
value on the task it belongs to, and after it exactly the stages below the change hold new files.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from .helpers import SMALL, file_mtimes, output_root, tracerflow

BASE = (*SMALL, "--set", "train.epochs=1", "--set", "write.n_folds=2", "--set", "train.continue_training=true")
AFTER_WRITE = {"train_sample", "tfrecords", "train", "predict"}
AFTER_RESAMPLE = {"resample", *AFTER_WRITE}
AFTER_EVENTS = {"events", "graphs", "selections", *AFTER_RESAMPLE}

# (override, what `show` names, the task it names it on, stage directories that change)
STEPS = [
    ("predict.discriminant.fractions.cjets=0.1", "predict.discriminant.fractions.cjets: 0.05 -> 0.1", "Predict()",
     {"predict"}),
    ("train.early_stopping=3", "train.early_stopping: 5 -> 3", "TrainFold(fold=0)", {"train", "predict"}),
    ("tfrecords.n_add_vars=1", "tfrecords.n_add_vars: 2 -> 1", "ConvertTFRecords(split=train)", {"tfrecords"}),
    ("write.tracks.max_tracks=8", "write.tracks.max_tracks: 40 -> 8", "WriteTrainSample(split=train)", AFTER_WRITE),
    ("resample.max_upsampling_ratio=8", "resample.max_upsampling_ratio: 10.0 -> 8.0", "Resample(split=train)",
     AFTER_RESAMPLE),
    ("selection.template.cuts.pt=jets.pt > 26", 'selection.template.cuts.pt: "jets.pt > 25" -> "jets.pt > 26"',
     "ApplySelections(sample=ttbar, file=ttbar_0000.root)", {"selections", *AFTER_RESAMPLE}),
    ("graph.template.topology.k=4", "graph.template.topology.k: 3 -> 4", "BuildGraphs(sample=ttbar, file=ttbar_0000.root)",
     {"graphs", *AFTER_RESAMPLE}),
    ("event.non_finite=drop", 'event.non_finite: "fail" -> "drop"', "BuildEvents(sample=ttbar, file=ttbar_0000.root)",
     AFTER_EVENTS),
    ("samples.zprime.generate.n_jets=2100", "samples.zprime.generate.n_jets: 2000 -> 2100", "GenerateSample(sample=zprime)",
     {"samples", *AFTER_EVENTS}),
    ("project.seed=7", "project.seed: 42 -> 7", "GenerateSample(sample=ttbar)", {"samples", *AFTER_EVENTS}),
]


def _stage_dirs(root, paths) -> set[str]:
    return {p.relative_to(root).parts[0] for p in paths if not p.relative_to(root).parts[0].startswith(".")}


def _weights(path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as f:
        f["weights"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_each_block_reruns_exactly_what_follows_and_show_says_why(tmp_path):
    tracerflow("run", *BASE, cwd=tmp_path, check=True)
    root = output_root(tmp_path)
    overrides: list[str] = []
    for override, reason, task, expected in STEPS:
        before = file_mtimes(root)
        model_before = _weights(root / "train" / "fold_0" / "model.h5")
        overrides += ["--set", override]
        shown = tracerflow("show", *BASE, *overrides, cwd=tmp_path, check=True).stdout
        line = next((line for line in shown.splitlines() if f"] {task}  ->" in line), "")
        assert reason in line, f"{override}: show does not say {reason!r} on {task}:\n{shown}"
        assert "[done]" not in line
        proc = tracerflow("run", *BASE, *overrides, cwd=tmp_path, check=True)
        after = file_mtimes(root)
        changed = _stage_dirs(root, [p for p in after if before.get(p) != after[p]])
        assert changed == expected, f"{override}: reran {sorted(changed)}, expected {sorted(expected)}"
        if "train" in expected and override != STEPS[1][0]:
            # continue_training is on: a fold whose data changed starts fresh, never keeps the old model
            with h5py.File(root / "train" / "fold_0" / "model.h5") as f:
                assert f.attrs["epochs_run"] == 1 and f.attrs["complete"]
            assert "made from other inputs" in proc.stderr, override
            if override.startswith("selection."):  # fewer jets: the model is another one
                weights = _weights(root / "train" / "fold_0" / "model.h5")
                assert any(not np.array_equal(weights[k], model_before[k]) for k in weights), override
