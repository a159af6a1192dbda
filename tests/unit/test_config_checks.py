"""Kinds and levels of expressions read against an event template (tracerflow.config.checks)."""
from __future__ import annotations

import pytest

from tracerflow.config.checks import BOOL, FLOAT, INT, STR, UNKNOWN, event_fields, expression_kind
from tracerflow.templates.event import Collection, EventTemplate

HZZ = {
    "leaves": {"weight": "EventWeight", "met_px": "MET_px", "npv": "NPrimaryVertices"},
    "collections": {
        "jets": {"branches": {"px": "Jet_Px", "py": "Jet_Py", "pz": "Jet_Pz", "e": "Jet_E", "btag": "Jet_btag"},
                 "four_vector": "pxpypze"},
        "tracks": {"branches": {"d0": "trk_d0", "q": "trk_q"}, "parent": "jets", "link": "trk_jet"},
        "muons": {"members": [{"pt": "pt1", "q": "q1"}, {"pt": "pt2", "q": "q2"}]},
    },
    "derived": {"n_jets": "count(jets)", "jets.ratio": "jets.pt / jets.e", "ht": "sum(jets.pt)"},
}


@pytest.mark.parametrize("text,level,kind", [
    ("jets.pt", "jets", FLOAT), ("jets.btag", "jets", UNKNOWN), ("jets.ratio", "jets", FLOAT),
    ("npv", "jets", UNKNOWN), ("n_jets", "event", INT), ("ht", "event", FLOAT), ("entry", "event", INT),
    ("sample", "event", STR), ("sample == 'ttbar'", "event", BOOL),
    ("count(muons)", "event", INT), ("count(tracks)", "jets", INT), ("count(tracks)", "event", INT),
    ("at(muons.q, 0)", "event", FLOAT), ("sum(tracks.q)", "jets", FLOAT), ("max(tracks.d0)", "event", FLOAT),
    ("met_px / 2", "event", FLOAT), ("2 * count(jets)", "event", INT), ("npv + 1", "event", UNKNOWN),
    ("npv + 1.5", "event", UNKNOWN), ("count(jets) + 1.5", "event", FLOAT), ("sqrt(count(jets))", "event", FLOAT),
    ("abs(count(jets))", "event", INT), ("where(met_px > 0, 1, 2)", "event", INT), ("-count(jets)", "event", INT),
    ("jets.pt > 20 and jets.btag > 0.5", "jets", BOOL), ("not npv", "event", BOOL), ("isnan(met_px)", "event", BOOL),
    ("(jets.pt > 20) & (jets.e > 1)", "jets", BOOL), ("pi", "event", FLOAT), ("1", "event", INT), ("true", "event", BOOL),
])
def test_kinds(text, level, kind):
    assert expression_kind(event_fields(HZZ), text, level) == kind


@pytest.mark.parametrize("text,level,says", [
    ("jets.ptt", "jets", "no field 'ptt' on jets"),
    ("electrons.pt", "event", "no collection 'electrons'"),
    ("count(electrons)", "event", "no collection 'electrons'"),
    ("jets.pt", "event", "reduce it"),                 # a descendant read without a reduction
    ("muons.pt", "jets", "neither 'jets' nor above"),  # a sibling
    ("count(muons)", "jets", "beside 'jets'"),         # reduction over a sibling
    ("sum(jets.pt)", "jets", "that level itself"),     # reduction at its own level
    ("count(jets)", "tracks", "above 'tracks'"),       # reduction over an ancestor
    ("sum(tracks.d0 * muons.pt)", "event", "neither 'tracks' nor above"),  # reduces tracks, reads muons
])
def test_problems(text, level, says):
    with pytest.raises(ValueError, match=says):
        expression_kind(event_fields(HZZ), text, level)


def test_edge_expressions_read_node_fields():
    fields = event_fields(HZZ)
    assert expression_kind(fields, "src.pt - dst.pt", "<edges>", nodes="jets") == FLOAT
    assert expression_kind(fields, "src.jets.btag", "<edges>", nodes="tracks") == UNKNOWN
    with pytest.raises(ValueError, match="src.<field> or dst.<field>"):
        expression_kind(fields, "pt", "<edges>", nodes="jets")
    with pytest.raises(ValueError, match="'ptt'"):
        expression_kind(fields, "src.ptt", "<edges>", nodes="jets")


def test_derived_fields_are_checked_in_order():
    bad = {**HZZ, "derived": {"a": "b + 1", "b": "count(jets)"}}
    with pytest.raises(ValueError, match="event.template.derived.a"):
        event_fields(bad)


class Declared(EventTemplate):
    leaves = {"w": "w"}
    collections = {"jets": Collection(branches={"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi", "mass": "jet_m"},
                                      four_vector="ptetaphim")}


class Open(Declared):
    def derive(self, batch) -> None:
        batch.tables["jets"].fields["extra"] = batch.tables["jets"].fields["pt"] * 2


def test_python_templates_declare_their_fields():
    fields = event_fields(Declared)
    assert expression_kind(fields, "jets.pt", "jets") == FLOAT
    with pytest.raises(ValueError, match="'extra'"):
        expression_kind(fields, "jets.extra", "jets")
    # a template that computes fields of its own in derive() may have any field: let them through
    assert expression_kind(event_fields(Open), "jets.extra", "jets") == UNKNOWN
    assert expression_kind(event_fields(Open), "count(taus)", "event") == INT


@pytest.mark.parametrize("text,says", [
    ("sample == 0", "compares a string with a number"),
    ("0 < sample", "compares a string with a number"),
    ("sample == 'ttbr'", "'ttbr' is not a sample .*did you mean 'ttbar'"),
    ("'zprim' != sample", "'zprim' is not a sample"),
])
def test_sample_is_compared_with_a_sample_name(text, says):
    fields = event_fields(HZZ)
    fields.samples = ("ttbar", "zprime")
    with pytest.raises(ValueError, match=says):
        expression_kind(fields, text, "event")
    assert expression_kind(fields, "sample == 'zprime'", "event") == BOOL
