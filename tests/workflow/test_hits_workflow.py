"""configs/hits.yaml end to end: toy events with signal hits in the pixel detector, the background
generator trained in the run (TrainBackgroundGenerator) and overlaid by BuildEvents, a GNN over
each hit's neighbours telling signal hits from background hits through TrainFold and Predict.

The overlay adds exactly the generator's digits of each event (checked against the ROOT file's
signal hits and the trained payload), the same whatever the chunk size and worker count, the hit
classifier learns (AUC, background rejection at fixed hit efficiency), and a fold retrained alone
has the bytes it had in the whole run."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import uproot

from tracerflow.background.conditions import ConditionsStore
from tracerflow.background.generator import BackgroundGenerator
from tracerflow.background.overlay import overlay
from tracerflow.toy.pixels import GEOMETRIES

from .helpers import datasets, tracerflow

#: configs/hits.yaml made small: ~100 events in 3 files, a quicker fit, 3 epochs.
SMALL = ("samples.ttbar.generate.n_jets=600", "samples.ttbar.generate.events_per_file=40",
         "background.train.fit_events=5000", "background.train.evaluation_events=500", "train.epochs=3")


def _run(work, *args):
    sets = [a for s in SMALL for a in ("--set", s)]
    proc = tracerflow("run", "--config", "hits", *sets, *args, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
def test_the_hit_workflow_overlays_the_trained_generator_and_learns_signal_hits(tmp_path):
    work = tmp_path / "a"
    work.mkdir()
    proc = _run(work)
    for family in ("GenerateSample", "TrainBackgroundGenerator", "BuildEvents", "BuildGraphs", "ApplySelections",
                   "TrainFold", "Predict"):
        assert family in proc.stdout, proc.stdout
    out = work / "tracerflow-output" / "toy-hits"

    # the overlay added exactly the trained generator's digits of each event's hash
    generator = BackgroundGenerator("clusters", store=ConditionsStore(out / "background" / "conditions"),
                                    framework_seed=42, geometry="default")
    generator.initialize()
    events = sorted((out / "events" / "ttbar").glob("*.h5"))
    assert len(events) == 3
    background_hits = 0
    for path in events:
        with h5py.File(path) as f:
            hashes, entries = f["index/hash"][:], f["index/entry"][:]
            hits = {k: f[f"hits/{k}"][:] for k in ("counts", "sensor", "ucell", "vcell", "charge", "is_background")}
            neighbours = f["neighbours/counts"][:]
        with uproot.open(out / "samples" / "ttbar" / path.name.replace(".h5", ".root")) as root:
            branches = root["events"].arrays(["hit_sensor", "hit_ucell", "hit_vcell", "hit_charge"], library="np")
        counts = np.array([len(branches["hit_charge"][e]) for e in entries])
        signal = {"event": np.repeat(np.arange(len(entries)), counts).astype(np.int32)}
        for name in ("sensor", "ucell", "vcell", "charge"):
            signal[name] = np.concatenate([branches[f"hit_{name}"][e] for e in entries])
        expected = overlay(signal, generator.events(hashes), GEOMETRIES["default"].shape)
        assert np.array_equal(hits["counts"], np.bincount(expected["event"], minlength=len(hashes)))
        for name in ("sensor", "ucell", "vcell", "charge"):
            assert np.array_equal(hits[name], expected[name]), name
        assert np.array_equal(hits["is_background"] == 1, expected["is_background"])
        background_hits += int(expected["is_background"].sum())
        # every hit has its 8 nearest hits (fewer in an event of fewer hits) as neighbours
        per_event = np.repeat(hits["counts"], hits["counts"])
        assert np.array_equal(neighbours, np.minimum(8, per_event - 1))
    assert background_hits > 1000

    # the classifier tells signal hits from background hits
    metrics = json.loads((out / "predict" / "metrics.json").read_text())["out_of_fold"]["all"]["model"]
    assert metrics["auc_signal_hits_vs_background_hits"] > 0.9, metrics
    assert metrics["background_hits_rejection_90"] > 3, metrics

    # a fold retrained alone gives the bytes it had in the whole run, where the generator's tasks ran
    # before it in the same process (they leave torch's threads as they found them)
    model = out / "train" / "fold_0" / "model.h5"
    trained = model.read_bytes()
    model.unlink()
    proc = _run(work, "--until", "TrainFold")
    assert "tasks: 1 ran," in proc.stdout and model.read_bytes() == trained, proc.stdout

    # the same events, hit for hit, in chunks of 17 events and on two workers
    other = tmp_path / "b"
    other.mkdir()
    _run(other, "--until", "BuildEvents", "--workers", "2", "--set", "event.chunk_size=17")
    for path in events:
        mine, theirs = datasets(path), datasets(other / path.relative_to(work))
        assert mine.keys() == theirs.keys()
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine), path.name

    # on a fresh machine: the payload shipped with the package, nothing trained
    shipped = tmp_path / "c"
    shipped.mkdir()
    proc = _run(shipped, "--until", "BuildEvents", "--set", "background.payload=shipped")
    assert "TrainBackgroundGenerator" not in proc.stdout, proc.stdout
    with h5py.File(next((shipped / "tracerflow-output" / "toy-hits" / "events" / "ttbar").glob("*.h5"))) as f:
        assert 0 < f["hits/is_background"][:].sum() < len(f["hits/is_background"])


def test_an_overlay_on_a_template_without_the_hits_collection_is_refused_before_anything_runs(tmp_path):
    proc = tracerflow("run", "--config", "hits", "--set", "event.template=tracerflow.templates.toy:ToyEvent",
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "background.collection" in proc.stderr and "'hits'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "tracerflow-output").exists()
