"""The two real ntuples of ../shared/data, read through configs alone and checked against uproot."""
from __future__ import annotations

from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
import yaml

from tracerflow.io.graphs_file import GraphsFile
from tracerflow.io.selections_file import read_cutflow, read_selection

from .helpers import tracerflow

HZZ = {
    "project": {"name": "hzz", "output_dir": "out", "seed": 7},
    "samples": {"hzz": {"files": [], "tree": "events"}},
    "event": {
        "template": {
            "leaves": {"weight": "EventWeight", "met_px": "MET_px", "met_py": "MET_py", "npv": "NPrimaryVertices"},
            "collections": {
                "jets": {"branches": {"px": "Jet_Px", "py": "Jet_Py", "pz": "Jet_Pz", "e": "Jet_E", "btag": "Jet_btag"},
                         "four_vector": "pxpypze"},
                "muons": {"branches": {"px": "Muon_Px", "py": "Muon_Py", "pz": "Muon_Pz", "e": "Muon_E",
                                       "charge": "Muon_Charge"}, "four_vector": "pxpypze"},
            },
            "derived": {"met": "hypot(met_px, met_py)", "ht": "sum(jets.pt)"},
        },
        "chunk_size": 500,
    },
    "graph": {"template": {
        "level": "event", "nodes": "jets", "topology": {"type": "delta_r", "max_dr": 2.0},
        "node_features": {"pt": "jets.pt", "eta": "jets.eta", "phi": "jets.phi", "btag": "jets.btag"},
        "edge_features": {"dr": "delta_r(src.eta, src.phi, dst.eta, dst.phi)"},
        "graph_features": {"met": "met", "n_muons": "count(muons)"},
        "graph_truth": {"weight": "weight"},
    }},
    "selection": {"template": {
        "level": "event",
        "cuts": {"two_muons": "count(muons) >= 2", "opposite_charge": "at(muons.charge, 0) * at(muons.charge, 1) < 0",
                 "met": "met > 20"},
        "outputs": {"met": "met", "lead_muon_pt": "at(muons.pt, 0)"},
        "weight": "weight",
    }},
}

ZMUMU = {
    "project": {"name": "zmumu", "output_dir": "out", "seed": 7},
    "samples": {"zmumu": {"files": [], "tree": "events"}},
    "event": {"template": {
        "leaves": {"run": "Run", "event": "Event", "mass": "M"},
        "collections": {"muons": {
            "members": [{"px": "px1", "py": "py1", "pz": "pz1", "e": "E1", "charge": "Q1"},
                        {"px": "px2", "py": "py2", "pz": "pz2", "e": "E2", "charge": "Q2"}],
            "four_vector": "pxpypze"}},
        "derived": {"m_calc": "sqrt(sum(muons.e)**2 - sum(muons.px)**2 - sum(muons.py)**2 - sum(muons.pz)**2)"},
    }, "run_event_branches": ["Run", "Event"]},
    "graph": {"template": {
        "level": "event", "nodes": "muons", "topology": {"type": "fully_connected"},
        "node_features": {"pt": "muons.pt", "eta": "muons.eta", "charge": "muons.charge"},
        "edge_features": {"charge_product": "src.charge * dst.charge"},
        "graph_features": {"mass": "mass"},
    }},
    "selection": {"template": {
        "level": "event",
        "cuts": {"window": "abs(mass - 91.2) < 20", "opposite_charge": "at(muons.charge, 0) != at(muons.charge, 1)"},
        "outputs": {"mass": "mass"},
    }},
}


def _write(tmp_path: Path, config: dict, file: Path) -> Path:
    sample = next(iter(config["samples"]))
    config = {**config, "samples": {sample: {**config["samples"][sample], "files": [str(file)]}}}
    path = tmp_path / "analysis.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_hzz_events_graphs_selection_match_uproot(tmp_path, shared_data):
    source = shared_data / "uproot-HZZ.root"
    config = _write(tmp_path, HZZ, source)
    tracerflow("run", "--config", str(config), cwd=tmp_path, check=True)
    out = tmp_path / "out" / "hzz"
    raw = uproot.open(source)["events"].arrays(library="ak")

    with h5py.File(out / "events/hzz/uproot-HZZ.h5") as f:
        assert f.attrs["complete"] and f.attrs["schema"] == "tracerflow.events"
        np.testing.assert_array_equal(f["jets/counts"][:], ak.to_numpy(ak.num(raw.Jet_Px)))
        pt = np.hypot(ak.to_numpy(ak.flatten(raw.Jet_Px)), ak.to_numpy(ak.flatten(raw.Jet_Py)))
        np.testing.assert_allclose(f["jets/pt"][:], pt, rtol=1e-6)
        mass2 = (ak.flatten(raw.Jet_E) ** 2 - ak.flatten(raw.Jet_Px) ** 2 - ak.flatten(raw.Jet_Py) ** 2
                 - ak.flatten(raw.Jet_Pz) ** 2)
        np.testing.assert_allclose(f["jets/mass"][:], np.sign(mass2) * np.sqrt(np.abs(mass2)), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(f["event/met"][:], np.hypot(raw.MET_px, raw.MET_py), rtol=1e-6)
        np.testing.assert_allclose(f["event/ht"][:], ak.to_numpy(ak.sum(np.hypot(raw.Jet_Px, raw.Jet_Py), axis=1)), rtol=1e-5)
        np.testing.assert_array_equal(f["muons/charge"][:], ak.to_numpy(ak.flatten(raw.Muon_Charge)))
        assert len(np.unique(f["index/hash"][:])) == len(raw)

    with GraphsFile(out / "graphs/hzz/uproot-HZZ.h5") as graphs:
        arrays = graphs.read()
        np.testing.assert_array_equal(arrays["nodes/counts"], ak.to_numpy(ak.num(raw.Jet_Px)))
        assert graphs.names("nodes/x") == ["pt", "eta", "phi", "btag"]
        np.testing.assert_allclose(arrays["nodes/x"][:, 0], pt, rtol=1e-6)
        assert (arrays["edges/x"][:, 0] < 2.0).all()
        np.testing.assert_array_equal(arrays["graph/x"][:, 1], ak.to_numpy(ak.num(raw.Muon_Px)))

    rows = read_cutflow(out / "selections/hzz/uproot-HZZ.h5")
    nmu = ak.num(raw.Muon_Px)
    two = nmu >= 2
    q = ak.pad_none(raw.Muon_Charge, 2)
    opposite = two & ak.fill_none(q[:, 0] * q[:, 1] < 0, False)
    met = np.hypot(raw.MET_px, raw.MET_py)
    final = opposite & (met > 20)
    w = ak.to_numpy(raw.EventWeight)
    expected = [("all", len(raw), w.sum()), ("two_muons", int(ak.sum(two)), w[ak.to_numpy(two)].sum()),
                ("opposite_charge", int(ak.sum(opposite)), w[ak.to_numpy(opposite)].sum()),
                ("met", int(ak.sum(final)), w[ak.to_numpy(final)].sum())]
    assert [(n, p) for n, p, _ in rows] == [(n, p) for n, p, _ in expected]
    np.testing.assert_allclose([x for _, _, x in rows], [x for _, _, x in expected], rtol=1e-6)
    selected = read_selection(out / "selections/hzz/uproot-HZZ.h5")
    np.testing.assert_array_equal(selected["index/entry"], np.flatnonzero(ak.to_numpy(final)))


@pytest.mark.slow
def test_zmumu_flat_ntuple_with_entry_filters(tmp_path, shared_data):
    source = shared_data / "uproot-Zmumu.root"
    raw = uproot.open(source)["events"].arrays(library="np")
    pick = [(int(raw["Run"][i]), int(raw["Event"][i])) for i in (5, 17, 400, 2000)]
    config = {**ZMUMU, "event": {**ZMUMU["event"], "event_stop": 1000, "run_event_list": [list(p) for p in pick]}}
    path = _write(tmp_path, config, source)
    tracerflow("run", "--config", str(path), "--until", "BuildEvents", cwd=tmp_path, check=True)
    with h5py.File(tmp_path / "out/zmumu/events/zmumu/uproot-Zmumu.h5") as f:
        wanted = np.isin(raw["Run"].astype(np.int64) * 10**9 + raw["Event"], [r * 10**9 + e for r, e in pick])
        expected = np.flatnonzero(wanted[:1000])
        assert 3 <= len(expected) < 40
        np.testing.assert_array_equal(f["index/entry"][:], expected)

    path = _write(tmp_path, ZMUMU, source)
    tracerflow("run", "--config", str(path), cwd=tmp_path, check=True)
    with h5py.File(tmp_path / "out/zmumu/events/zmumu/uproot-Zmumu.h5") as f:
        np.testing.assert_array_equal(f["muons/counts"][:], np.full(len(raw["M"]), 2))
        np.testing.assert_allclose(f["muons/px"][0::2], raw["px1"], rtol=1e-6)
        np.testing.assert_allclose(f["muons/pt"][1::2], np.hypot(raw["px2"], raw["py2"]), rtol=1e-9)
        np.testing.assert_allclose(f["event/m_calc"][:], raw["M"], rtol=1e-3, atol=2e-2)
    with GraphsFile(tmp_path / "out/zmumu/graphs/zmumu/uproot-Zmumu.h5") as graphs:
        arrays = graphs.read()
        assert (arrays["edges/counts"] == 2).all()
        np.testing.assert_array_equal(arrays["edges/x"][0::2, 0], raw["Q1"] * raw["Q2"])
    rows = read_cutflow(tmp_path / "out/zmumu/selections/zmumu/uproot-Zmumu.h5")
    window = np.abs(raw["M"] - 91.2) < 20
    both = window & (raw["Q1"] != raw["Q2"])
    assert rows == [("all", len(raw["M"]), float(len(raw["M"]))), ("window", int(window.sum()), float(window.sum())),
                    ("opposite_charge", int(both.sum()), float(both.sum()))]
