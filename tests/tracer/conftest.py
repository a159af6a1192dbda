"""Fixtures: small ROOT files of two samples built into events, graphs and selections caches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from tracerflow.events.build import build_events
from tracerflow.graphs.build import build_graphs
from tracerflow.selections.apply import apply_selection
from tracerflow.templates import event as event_templates
from tracerflow.templates import graph as graph_templates
from tracerflow.templates import selection as selection_templates

EVENT_SPEC = {
    "leaves": {"weight": "weight", "run": "run"},
    "collections": {
        "jets": {"branches": {"px": "jet_px", "py": "jet_py", "pz": "jet_pz", "e": "jet_e"}, "four_vector": "pxpypze"},
        "tracks": {"branches": {"pt": "trk_pt", "d0": "trk_d0"}, "parent": "jets", "link": "trk_jet"},
    },
}
GRAPH_SPEC = {
    "level": "jets",
    "nodes": "tracks",
    "node_features": {"pt": "tracks.pt", "d0": "tracks.d0"},
    "edge_features": {"dpt": "src.pt - dst.pt"},
    "graph_features": {"jet_pt": "jets.pt", "weight": "weight"},
    "node_truth": {"big": "tracks.pt > 5"},
    "graph_truth": {"hard": "jets.pt > 30"},
}
SELECTION_SPEC = {
    "cuts": {"two_jets": "count(jets) >= 2"},
    "outputs": {"ht": "sum(jets.pt)", "lead": "at(jets.pt, 0)"},
    "weight": "weight",
}


@dataclass
class Sample:
    """The caches built from one ROOT file of one sample."""

    name: str
    events: Path
    graphs: Path
    selections: Path
    n: int


def write_root(path: Path, n: int, seed: int) -> None:
    """A tree ``events`` with flat and jagged branches, tracks linked to jets by index."""
    rng = np.random.default_rng(seed)
    njet = rng.integers(0, 4, n)
    njet[:2] = (3, 0)
    ntrk = rng.integers(0, 6, n)
    total_jets, total_trk = int(njet.sum()), int(ntrk.sum())
    px, py, pz = (rng.normal(0, 30, total_jets).astype(np.float32) for _ in range(3))
    e = (np.sqrt(px**2 + py**2 + pz**2) + 5).astype(np.float32)
    trk_jet = np.concatenate([rng.integers(0, max(k, 1), t) if k else np.full(t, -1) for k, t in zip(njet, ntrk)])
    branches = {"weight": rng.uniform(0.5, 1.5, n).astype(np.float32), "run": np.arange(n, dtype=np.int32)}
    branches.update({f"jet_{k}": ak.unflatten(v, njet) for k, v in (("px", px), ("py", py), ("pz", pz), ("e", e))})
    branches["trk_pt"] = ak.unflatten(rng.exponential(5, total_trk).astype(np.float32), ntrk)
    branches["trk_d0"] = ak.unflatten(rng.normal(0, 1, total_trk).astype(np.float32), ntrk)
    branches["trk_jet"] = ak.unflatten(trk_jet.astype(np.int32), ntrk)
    with uproot.recreate(path) as f:
        f["events"] = branches


def make_sample(tmp: Path, name: str, n: int, seed: int, chunk_size: int = 4) -> Sample:
    """ROOT file -> events -> graphs and selections for one sample."""
    root = tmp / f"{name}.root"
    write_root(root, n, seed)
    events, graphs, selections = tmp / f"{name}.events.h5", tmp / f"{name}.graphs.h5", tmp / f"{name}.sel.h5"
    build_events(root, events, event_templates.declared(EVENT_SPEC), sample=name, logical_file=f"{name}/f0.root",
                 tree="events", config_digest="d", created_by="test", chunk_size=chunk_size)
    build_graphs(events, graphs, graph_templates.declared(GRAPH_SPEC), config_digest="d", created_by="test")
    apply_selection(events, selections, selection_templates.declared(SELECTION_SPEC), config_digest="d", created_by="test")
    return Sample(name, events, graphs, selections, n)


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    """Two samples: ttbar (10 events) and zjets (7 events)."""
    tmp = tmp_path_factory.mktemp("tracer-samples")
    return {"ttbar": make_sample(tmp, "ttbar", 10, 1), "zjets": make_sample(tmp, "zjets", 7, 2)}
