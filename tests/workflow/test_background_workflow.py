"""TrainBackgroundGenerator from the command line: a config's ``background`` block trains the
generator on the reference simulation, puts its payload into the project's conditions store (where
BackgroundGenerator loads it), writes a quality report; reruns find it done, two runs give the
same bytes, and a bad block is refused before anything runs."""
from __future__ import annotations

import hashlib

import h5py
import numpy as np

from tracerflow.background.conditions import ConditionsStore, shipped_store
from tracerflow.background.generator import DEFAULT_GLOBALTAG, BackgroundGenerator, payload_name

from .helpers import tracerflow

CONFIG = """\
project: {{name: bkg}}
samples:
  hzz: {{files: [{data}]}}
event:
  template:
    leaves: {{w: EventWeight}}
selection:
  template: {{level: event}}
background:
{background}
"""
#: The background block: the image model (conditioned) at a tiny geometry for a few WGAN-GP steps, or
#: the default block (the clusters model at the default geometry; only the model is named).
GAN = """\
  model: conditioned
  geometry: {geometry}
  train: {{steps: 6, batch_size: 4, critic_steps: 2, checkpoint_every: 3, evaluation_events: 200}}"""
CLUSTERS = """\
  model: clusters"""
TINY = "{layers: [1, 2], height: 16, width: 32}"


def _work(tmp_path, name, shared_data, geometry=TINY):
    work = tmp_path / name
    work.mkdir()
    (work / "analysis.yaml").write_text(CONFIG.format(data=shared_data / "uproot-HZZ.root",
                                                      background=GAN.format(geometry=geometry)))
    return work


def _bytes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_generator_trains_into_the_conditions_store_and_reruns_find_it_done(tmp_path, shared_data):
    works = [_work(tmp_path, name, shared_data) for name in ("a", "b")]
    for work in works:
        proc = tracerflow("run", "--config", "analysis.yaml", "--until", "TrainBackgroundGenerator", cwd=work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ran: 1 TrainBackgroundGenerator" in proc.stdout
    out = works[0] / "tracerflow-output" / "bkg" / "background"
    assert _bytes(out) == _bytes(works[1] / "tracerflow-output" / "bkg" / "background")

    with h5py.File(out / "conditioned.h5") as f:
        assert f.attrs["payload"] == "BackgroundGenerator_conditioned" and f.attrs["revision"] == 1
        assert f.attrs["steps"] == 6 and len(f["wasserstein"]) == 6
    report = (out / "conditioned.report.html").read_text()
    assert "occupancy" in report.lower() and "IEA-GAN" in report and report.count("data:image/png;base64") >= 4

    store = ConditionsStore(out / "conditions")
    generator = BackgroundGenerator("conditioned", store=store, framework_seed=42)
    generator.initialize()
    assert generator.geometry.shape == (3, 16, 32)
    digits = generator.events(np.arange(1, 6, dtype=np.uint64))
    assert set(digits) == {"event", "sensor", "ucell", "vcell", "charge"}

    again = tracerflow("run", "--config", "analysis.yaml", "--until", "TrainBackgroundGenerator", cwd=works[0])
    assert again.returncode == 0 and again.stdout.startswith("tracerflow: nothing to run"), again.stdout


def test_a_bad_background_block_is_refused_before_anything_runs(tmp_path, shared_data):
    work = _work(tmp_path, "c", shared_data, geometry="pxd")
    proc = tracerflow("run", "--config", "analysis.yaml", cwd=work)
    assert proc.returncode == 2 and "background.geometry" in proc.stderr and "no pixel geometry named 'pxd'" in proc.stderr
    assert not (work / "tracerflow-output").exists()


def test_the_clusters_model_is_fitted_and_meets_the_quality_goals(tmp_path, shared_data):
    """The default block (model: clusters at the default geometry): fitted by maximum likelihood
    (no steps, no checkpoint), its payload in the store, its 10,000-event report passing every
    goal, and the payload the very one shipped with the package (lib/background/ship.py)."""
    work = tmp_path / "k"
    work.mkdir()
    (work / "analysis.yaml").write_text(CONFIG.format(data=shared_data / "uproot-HZZ.root", background=CLUSTERS))
    proc = tracerflow("run", "--config", "analysis.yaml", "--until", "TrainBackgroundGenerator", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = work / "tracerflow-output" / "bkg" / "background"
    with h5py.File(out / "clusters.h5") as f:
        assert f.attrs["payload"] == "BackgroundGenerator_clusters" and f.attrs["steps"] == 0
        assert f.attrs["evaluation_events"] == 10000
        assert bool(f.attrs["passes_goals"]), f["quality"][()].decode()
    assert not (out / "clusters.checkpoint.pt").exists()
    generator = BackgroundGenerator("clusters", store=ConditionsStore(out / "conditions"), framework_seed=42)
    generator.initialize()
    assert generator.geometry.shape == (10, 32, 96) and generator.payload.metadata["fit"]["events"] == 20000
    digits = generator.events(np.arange(1, 6, dtype=np.uint64))
    assert len(digits["charge"]) > 0
    shipped = shipped_store().get(DEFAULT_GLOBALTAG, payload_name("clusters"))
    assert (generator.payload.revision, generator.payload.sha256) == (shipped.revision, shipped.sha256)
    assert generator.payload.metadata == shipped.metadata
