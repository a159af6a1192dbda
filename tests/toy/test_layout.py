"""ROOT layout of the toy files: branch names, dtypes and internal consistency."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import uproot

from tracerflow.toy import PROCESSES, TREE_NAME, sigma_d0, sigma_z0

EXPECTED_BRANCHES = {
    "run": "int32",
    "event_number": "int64",
    "weight": "float32",
    "n_jets": "int32",
    "jet_pt": "float32",
    "jet_eta": "float32",
    "jet_phi": "float32",
    "jet_mass": "float32",
    "jet_flavour": "int32",
    "jet_ntracks": "int32",
    "jet_llr_bl": "float32",
    "jet_llr_cl": "float32",
    "n_tracks": "int32",
    "trk_pt": "float32",
    "trk_deta": "float32",
    "trk_dphi": "float32",
    "trk_d0": "float32",
    "trk_z0": "float32",
    "trk_sigma_d0": "float32",
    "trk_sigma_z0": "float32",
    "trk_charge": "int32",
    "trk_origin": "int32",
    "trk_jet_index": "int32",
}
JAGGED = {name for name in EXPECTED_BRANCHES if name.startswith(("jet_", "trk_"))}


def test_branch_names_and_types(mixed_files: dict[str, list[Path]]) -> None:
    with uproot.open(mixed_files["ttbar"][0]) as root_file:
        tree = root_file[TREE_NAME]
        assert list(tree.keys()) == list(EXPECTED_BRANCHES)
        for name, dtype in EXPECTED_BRANCHES.items():
            interpretation = tree[name].interpretation
            if name in JAGGED:
                assert isinstance(interpretation, uproot.AsJagged), name
                interpretation = interpretation.content
            assert interpretation.to_dtype == np.dtype(dtype), name


def test_event_and_jet_structure(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    for process, data in mixed.items():
        n_events = len(data["run"])
        assert np.all(data["run"] == PROCESSES[process].run)
        np.testing.assert_array_equal(data["event_number"], np.arange(n_events))
        weight = data["weight"] / PROCESSES[process].weight
        assert np.all(np.abs(weight - 1.0) < 0.5) and abs(weight.mean() - 1.0) < 0.01
        assert data["n_jets"].sum() == len(data["jet_pt"]) == 100_000
        assert np.all(data["n_jets"][:-1] >= 2)
        assert data["n_tracks"].sum() == len(data["trk_pt"]) == data["jet_ntracks"].sum()
        assert set(np.unique(data["jet_flavour"])) == {0, 4, 5}
        assert np.all(data["jet_pt"] > 20.0) and np.all(np.abs(data["jet_eta"]) <= 2.5)
        assert np.all(np.abs(data["jet_phi"]) <= np.float32(np.pi))
        assert np.all(data["jet_mass"] > 0.0)


def test_tracks_are_ordered_by_jet(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    for data in mixed.values():
        event_of_jet = np.repeat(np.arange(len(data["n_jets"])), data["n_jets"])
        jet_offsets = np.concatenate([[0], np.cumsum(data["n_jets"])[:-1]])
        global_jet = np.repeat(np.arange(len(data["jet_pt"])), data["jet_ntracks"])
        event_of_track = np.repeat(np.arange(len(data["n_tracks"])), data["n_tracks"])
        np.testing.assert_array_equal(event_of_jet[global_jet], event_of_track)
        np.testing.assert_array_equal(global_jet - jet_offsets[event_of_track], data["trk_jet_index"])
        from_index = jet_offsets[event_of_track] + data["trk_jet_index"]
        counts = np.bincount(from_index, minlength=len(data["jet_pt"]))
        np.testing.assert_array_equal(counts, data["jet_ntracks"])
        same_jet = global_jet[1:] == global_jet[:-1]
        assert np.all(data["trk_pt"][1:][same_jet] <= data["trk_pt"][:-1][same_jet])


def test_track_values(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    for data in mixed.values():
        jet_pt = np.repeat(data["jet_pt"], data["jet_ntracks"])
        flavour = np.repeat(data["jet_flavour"], data["jet_ntracks"])
        assert np.all(data["trk_pt"] >= np.float32(0.5) * (1 - 1e-6))
        assert np.all(data["trk_pt"] <= jet_pt * (1 + 1e-6))
        assert set(np.unique(data["trk_charge"])) == {-1, 1}
        np.testing.assert_array_equal(data["trk_sigma_d0"], sigma_d0(data["trk_pt"]).astype(np.float32))
        np.testing.assert_array_equal(data["trk_sigma_z0"], sigma_z0(data["trk_pt"]).astype(np.float32))
        origin = data["trk_origin"]
        assert set(np.unique(origin)) <= set(range(7))
        assert not np.any(np.isin(origin[flavour == 0], [3, 4, 5]))
        assert not np.any(np.isin(origin[flavour == 4], [3, 4]))
        assert not np.any(origin[flavour == 5] == 5)
        assert np.all(np.isfinite(data["jet_llr_bl"])) and np.all(np.isfinite(data["jet_llr_cl"]))
