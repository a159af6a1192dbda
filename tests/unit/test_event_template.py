"""EventTemplate: branch arrays -> EventBatch (leaves, collections, four-vectors, links, derived)."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from tracerflow.columns import EVENT
from tracerflow.templates.event import Collection, EventTemplate, TemplateError, declared

from .helpers import make_index


class JetsAndTracks(EventTemplate):
    leaves = {"met": "MET", "run": "runNumber"}
    collections = {
        "jets": Collection(
            branches={"px": "jet_px", "py": "jet_py", "pz": "jet_pz", "e": "jet_e", "label": "jet_label"},
            four_vector="pxpypze",
        ),
        "tracks": Collection(branches={"pt": "trk_pt", "d0": "trk_d0"}, parent="jets", link="trk_jet"),
    }
    derived = {
        "ht": "sum(jets.pt)",
        "jets.rel": "jets.pt / met",
        "jets.central": "abs(jets.eta) < 1",
        "jets.ntrk": "count(tracks)",
        "tracks.frac": "tracks.pt / jets.pt",
    }


def arrays():
    return {
        "MET": np.array([10.0, 20.0, 40.0]),
        "runNumber": ak.Array(np.array([7, 7, 8], np.int32)),
        "jet_px": ak.Array([[3.0, 0.0], [], [1.0]]),
        "jet_py": ak.Array([[4.0, 2.0], [], [0.0]]),
        "jet_pz": ak.Array([[0.0, 0.0], [], [0.0]]),
        "jet_e": ak.Array([[13.0, 2.0], [], [1.0]]),
        "jet_label": ak.Array([[5, 0], [], [4]]),
        # event 0: links 1, 0, -1, 1; event 1 has no jets; event 2: 0 and an out-of-range 1
        "trk_pt": ak.Array([[1.0, 2.0, 3.0, 4.0], [5.0], [6.0, 7.0]]),
        "trk_d0": ak.Array([[0.1, 0.2, 0.3, 0.4], [0.5], [0.6, 0.7]]),
        "trk_jet": ak.Array([[1, 0, -1, 1], [0], [0, 1]]),
    }


def test_leaves_and_index():
    index = make_index(3)
    batch = JetsAndTracks().build(arrays(), index)
    assert len(batch) == 3
    assert batch.index is index
    np.testing.assert_array_equal(batch.event["met"], [10, 20, 40])
    np.testing.assert_array_equal(batch.event["run"], [7, 7, 8])
    assert batch.event["run"].dtype == np.int32


def test_collection_counts_fields_and_four_vector():
    batch = JetsAndTracks().build(arrays(), make_index(3))
    jets = batch.tables["jets"]
    assert jets.parent == EVENT
    np.testing.assert_array_equal(jets.counts, [2, 0, 1])
    assert jets.counts.dtype == np.int64
    np.testing.assert_array_equal(jets.fields["label"], [5, 0, 4])
    np.testing.assert_allclose(jets.fields["pt"], [5, 2, 1])
    np.testing.assert_allclose(jets.fields["eta"], [0, 0, 0])
    np.testing.assert_allclose(jets.fields["phi"], [np.arctan2(4, 3), np.pi / 2, 0])
    np.testing.assert_allclose(jets.fields["mass"], [12, 0, 0])
    assert set(jets.fields) == {"px", "py", "pz", "e", "label", "pt", "eta", "phi", "mass", "rel", "central", "ntrk"}


def test_child_collection_via_link():
    batch = JetsAndTracks().build(arrays(), make_index(3))
    tracks = batch.tables["tracks"]
    assert tracks.parent == "jets"
    # jet 0 of event 0 owns track 1 (pt 2); jet 1 owns tracks 0 and 3 (pt 1, 4) in original order;
    # the -1 link, the track of the jet-less event and the out-of-range link are dropped
    np.testing.assert_array_equal(tracks.counts, [1, 2, 1])
    np.testing.assert_array_equal(tracks.fields["pt"], [2, 1, 4, 6])
    np.testing.assert_array_equal(tracks.fields["d0"], [0.2, 0.1, 0.4, 0.6])
    np.testing.assert_array_equal(batch.event_row("tracks"), [0, 0, 0, 2])


def test_derived_fields_at_event_and_collection_level():
    batch = JetsAndTracks().build(arrays(), make_index(3))
    np.testing.assert_allclose(batch.event["ht"], [7, 0, 1])
    assert batch.event["ht"].dtype == np.float32  # float64 results are stored compactly
    np.testing.assert_allclose(batch.tables["jets"].fields["rel"], [0.5, 0.2, 1 / 40], rtol=1e-6)
    assert batch.tables["jets"].fields["central"].dtype == bool
    np.testing.assert_array_equal(batch.tables["jets"].fields["central"], [True, True, True])
    np.testing.assert_array_equal(batch.tables["jets"].fields["ntrk"], [1, 2, 1])
    np.testing.assert_allclose(batch.tables["tracks"].fields["frac"], [2 / 5, 1 / 2, 4 / 2, 6 / 1], rtol=1e-6)


def test_branches_lists_every_branch_once_in_stable_order():
    assert JetsAndTracks().branches() == [
        "MET", "runNumber", "jet_px", "jet_py", "jet_pz", "jet_e", "jet_label", "trk_pt", "trk_d0", "trk_jet",
    ]


def test_explicit_kinematics_list():
    class OnlyPt(EventTemplate):
        collections = {"jets": Collection(branches={"px": "jet_px", "py": "jet_py", "pz": "jet_pz", "e": "jet_e"},
                                          four_vector="pxpypze", kinematics=("pt",))}

    batch = OnlyPt().build(arrays(), make_index(3))
    assert set(batch.tables["jets"].fields) == {"px", "py", "pz", "e", "pt"}


@pytest.mark.parametrize(
    "transform",
    [lambda a: a, lambda a: ak.Array([[9.0]] + a.tolist())[1:], lambda a: ak.Array(a.tolist()[::-1])[[2, 1, 0]]],
    ids=["plain", "offset-view", "list-array"],
)
def test_jagged_inputs_in_any_awkward_layout(transform):
    data = arrays()
    data = {k: (transform(v) if k.startswith(("jet_", "trk_")) else v) for k, v in data.items()}
    batch = JetsAndTracks().build(data, make_index(3))
    np.testing.assert_allclose(batch.tables["jets"].fields["pt"], [5, 2, 1])
    np.testing.assert_array_equal(batch.tables["tracks"].fields["pt"], [2, 1, 4, 6])


def test_masked_awkward_input():
    data = arrays()
    keep = ak.Array([[True, True, True, True], [True], [True, False]])
    for name in ("trk_pt", "trk_d0", "trk_jet"):
        data[name] = data[name][keep]
    batch = JetsAndTracks().build(data, make_index(3))
    np.testing.assert_array_equal(batch.tables["tracks"].fields["pt"], [2, 1, 4, 6])


def test_counts_mismatch_names_the_branch():
    data = arrays()
    data["jet_py"] = ak.Array([[4.0], [1.0], [0.0]])
    with pytest.raises(TemplateError) as info:
        JetsAndTracks().build(data, make_index(3))
    assert "'jet_py'" in str(info.value)
    assert "'jets'" in str(info.value)


def test_link_counts_mismatch_names_the_link():
    data = arrays()
    data["trk_jet"] = ak.Array([[1, 0, -1], [0], [0, 1]])
    with pytest.raises(TemplateError, match="'trk_jet'"):
        JetsAndTracks().build(data, make_index(3))


def test_jagged_branch_with_wrong_number_of_events():
    data = arrays()
    for name in ("jet_px", "jet_py", "jet_pz", "jet_e", "jet_label"):
        data[name] = data[name][:2]
    with pytest.raises(TemplateError, match="'jet_px': 2 lists for 3 events"):
        JetsAndTracks().build(data, make_index(3))


def test_leaf_must_be_one_value_per_event():
    data = arrays()
    data["MET"] = np.array([1.0, 2.0])
    with pytest.raises(TemplateError, match="leaf 'met': branch 'MET'"):
        JetsAndTracks().build(data, make_index(3))


def test_flat_branch_declared_as_collection():
    class Bad(EventTemplate):
        collections = {"jets": Collection(branches={"pt": "MET"})}

    with pytest.raises(TemplateError, match="'MET' is not a list of numbers"):
        Bad().build(arrays(), make_index(3))


@pytest.mark.parametrize(
    "collections, message",
    [
        ({"jets": Collection(branches={"pt": "a"}, four_vector="xyz")}, "four_vector 'xyz'"),
        ({"jets": Collection(branches={"px": "a", "py": "b"}, four_vector="pxpypze")}, "needs attributes ['pz', 'e']"),
        ({"tracks": Collection(branches={"pt": "a"}, parent="jets", link="l")}, "unknown parent 'jets'"),
        ({"jets": Collection(branches={"pt": "a"}),
          "tracks": Collection(branches={"pt": "b"}, parent="jets")}, "needs a link branch"),
    ],
)
def test_bad_declarations_fail_at_construction(collections, message):
    cls = type("Bad", (EventTemplate,), {"collections": collections})
    with pytest.raises(TemplateError) as info:
        cls()
    assert message in str(info.value)


def test_bad_derived_expression_fails_at_construction():
    cls = type("Bad", (EventTemplate,), {"derived": {"x": "met.sum()"}})
    with pytest.raises(ValueError, match="met.sum"):
        cls()


def test_python_subclass_with_derive_override():
    class WithDerive(JetsAndTracks):
        def derive(self, batch):
            jets = batch.tables["jets"]
            batch.event["lead_label"] = np.where(
                jets.counts > 0, np.pad(jets.fields["label"], (0, 1))[np.minimum(jets.offsets[:-1], len(jets))], -1)
            jets.fields["is_b"] = jets.fields["label"] == 5

    batch = WithDerive().build(arrays(), make_index(3))
    np.testing.assert_array_equal(batch.event["lead_label"], [5, -1, 4])
    np.testing.assert_array_equal(batch.tables["jets"].fields["is_b"], [True, False, False])
    # declared derived fields are there before derive() runs
    assert "ht" in batch.event


def test_declared_equals_subclass():
    spec = {
        "leaves": {"met": "MET", "run": "runNumber"},
        "collections": {
            "jets": {"branches": {"px": "jet_px", "py": "jet_py", "pz": "jet_pz", "e": "jet_e", "label": "jet_label"},
                     "four_vector": "pxpypze"},
            "tracks": {"branches": {"pt": "trk_pt", "d0": "trk_d0"}, "parent": "jets", "link": "trk_jet"},
        },
        "derived": dict(JetsAndTracks.derived),
    }
    a = declared(spec).build(arrays(), make_index(3))
    b = JetsAndTracks().build(arrays(), make_index(3))
    assert a.event.keys() == b.event.keys()
    for k in a.event:
        np.testing.assert_array_equal(a.event[k], b.event[k])
    for name in ("jets", "tracks"):
        np.testing.assert_array_equal(a.tables[name].counts, b.tables[name].counts)
        assert a.tables[name].fields.keys() == b.tables[name].fields.keys()
        for k in a.tables[name].fields:
            np.testing.assert_array_equal(a.tables[name].fields[k], b.tables[name].fields[k])


def test_empty_chunk():
    data = {k: (v[:0] if not isinstance(v, np.ndarray) else v[:0]) for k, v in arrays().items()}
    batch = JetsAndTracks().build(data, make_index(0))
    assert len(batch) == 0
    assert len(batch.tables["jets"]) == 0 and len(batch.tables["tracks"]) == 0
    assert batch.event["ht"].shape == (0,)


def test_fixed_size_collection_from_flat_members():
    class Leptons(EventTemplate):
        collections = {
            "leptons": Collection(
                members=({"pt": "l1_pt", "eta": "l1_eta", "phi": "l1_phi", "mass": "l1_m"},
                         {"pt": "l2_pt", "eta": "l2_eta", "phi": "l2_phi", "mass": "l2_m"}),
                four_vector="ptetaphim", kinematics=("px", "pz"),
            ),
        }
        derived = {"mll_proxy": "sum(leptons.pt)"}

    data = {
        "l1_pt": np.array([10.0, 20.0, 30.0]), "l2_pt": ak.Array([1.0, 2.0, 3.0]),
        "l1_eta": np.zeros(3), "l2_eta": np.array([0.0, 1.0, -1.0]),
        "l1_phi": np.zeros(3), "l2_phi": np.full(3, np.pi / 2),
        "l1_m": np.zeros(3), "l2_m": np.zeros(3),
    }
    tmpl = Leptons()
    assert tmpl.branches() == ["l1_pt", "l1_eta", "l1_phi", "l1_m", "l2_pt", "l2_eta", "l2_phi", "l2_m"]
    batch = tmpl.build(data, make_index(3))
    leptons = batch.tables["leptons"]
    np.testing.assert_array_equal(leptons.counts, [2, 2, 2])
    # interleaved per event: (l1, l2) of event 0, then of event 1, ...
    np.testing.assert_array_equal(leptons.fields["pt"], [10, 1, 20, 2, 30, 3])
    np.testing.assert_allclose(leptons.fields["px"], [10, 0, 20, 0, 30, 0], atol=1e-12)
    np.testing.assert_allclose(leptons.fields["pz"], [0, 0, 0, 2 * np.sinh(1), 0, -3 * np.sinh(1)], atol=1e-12)
    np.testing.assert_allclose(batch.event["mll_proxy"], [11, 22, 33])


def test_members_declaration_errors():
    with pytest.raises(TemplateError, match="either branches .* or members"):
        type("Both", (EventTemplate,), {"collections": {"x": Collection(branches={"pt": "a"}, members=({"pt": "b"},))}})()
    with pytest.raises(TemplateError, match="either branches .* or members"):
        type("Neither", (EventTemplate,), {"collections": {"x": Collection()}})()
    with pytest.raises(TemplateError, match="same attributes"):
        type("Ragged", (EventTemplate,), {"collections": {"x": Collection(members=({"pt": "a"}, {"eta": "b"}))}})()


class MuonsInJets(EventTemplate):
    collections = {
        "jets": Collection(branches={"eta": "jet_eta", "phi": "jet_phi"}),
        "muons": Collection(branches={"eta": "mu_eta", "phi": "mu_phi", "q": "mu_q"}, parent="jets", match_dr=0.4),
    }


def test_match_dr_attaches_items_to_the_nearest_parent_within_the_cone():
    """Without a link branch, each muon goes to its event's nearest jet in delta R (phi wraps) when
    closer than 0.4; muons outside every cone, and muons of events without jets, are dropped."""
    arrays = {
        "jet_eta": ak.Array([[0.0, 1.0], [], [2.0, -2.0, 0.0]]),
        "jet_phi": ak.Array([[0.0, 0.0], [], [3.1, 0.0, 1.0]]),
        # event 0: near jet 1, near jet 0, outside; event 1: no jets; event 2: across the phi wrap to jet 0, near jet 2
        "mu_eta": ak.Array([[0.9, 0.1, 5.0], [0.0], [2.0, 0.05]]),
        "mu_phi": ak.Array([[0.1, -0.1, 0.0], [0.0], [-3.1, 1.2]]),
        "mu_q": ak.Array([[1, 2, 3], [4], [5, 6]]),
    }
    batch = MuonsInJets().build(arrays, make_index(3))
    muons = batch.tables["muons"]
    assert muons.parent == "jets"
    assert muons.counts.tolist() == [1, 1, 1, 0, 1]
    assert muons.fields["q"].tolist() == [2, 1, 5, 6]


def test_a_parent_needs_a_link_or_match_dr_not_both():
    with pytest.raises(TemplateError, match="link branch or match_dr"):
        declared({"collections": {"jets": {"branches": {"eta": "a", "phi": "b"}},
                                  "muons": {"branches": {"eta": "c"}, "parent": "jets"}}})
    with pytest.raises(TemplateError, match="link branch or match_dr"):
        declared({"collections": {"jets": {"branches": {"eta": "a", "phi": "b"}},
                                  "muons": {"branches": {"eta": "c"}, "parent": "jets", "link": "l", "match_dr": 0.4}}})
