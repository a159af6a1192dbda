"""SelectionTemplate: cutflows, masks and outputs on a hand-built batch."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.columns import Table
from tracerflow.templates.event import TemplateError
from tracerflow.templates.selection import Cutflow, SelectionTemplate, declared


class EventSel(SelectionTemplate):
    weight = "weight"
    cuts = {"met": "met > 55", "has_jet": "count(jets) >= 1"}
    outputs = {"ht": "sum(jets.pt)", "njet": "count(jets)"}


def test_event_cutflow_raw_and_weighted(batch):
    result = EventSel().apply(batch)
    # weights 1, 2, 0.5; met 50, 60, 70; jets 2, 0, 3
    assert result.cutflow.as_rows() == [("all", 3, 3.5), ("met", 2, 2.5), ("has_jet", 1, 0.5)]
    assert result.mask.tolist() == [False, False, True]
    np.testing.assert_allclose(result.outputs["ht"], [50])
    np.testing.assert_array_equal(result.outputs["njet"], [3])


def test_without_weight_counts_rows():
    class S(SelectionTemplate):
        cuts = {"a": "met < 65"}

    from .helpers import small_batch

    flow = S().apply(small_batch()).cutflow
    assert flow.as_rows() == [("all", 3, 3.0), ("a", 2, 2.0)]


def test_cuts_apply_in_order_and_are_cumulative(batch):
    class S(SelectionTemplate):
        weight = "weight"
        cuts = {"has_jet": "count(jets) >= 1", "met": "met > 55"}

    rows = S().apply(batch).cutflow.as_rows()
    assert rows == [("all", 3, 3.5), ("has_jet", 2, 1.5), ("met", 1, 0.5)]


def test_nan_fails_a_cut(batch):
    class S(SelectionTemplate):
        cuts = {"lead_hi": "max(jets.pt) > 0", "lead_lo": "max(jets.pt) < 1000"}

    # event 1 has no jets: max() is NaN and fails both comparisons
    result = S().apply(batch)
    assert result.mask.tolist() == [True, False, True]
    batch.event["x"] = np.array([np.nan, 1.0, 2.0])

    class T(SelectionTemplate):
        cuts = {"x": "x <= 1"}

    assert T().apply(batch).mask.tolist() == [False, True, False]


def test_outputs_only_for_passing_rows(batch):
    class S(SelectionTemplate):
        cuts = {"met": "met >= 60"}
        outputs = {"met": "met", "lead": "at(jets.pt, 0)", "hash": "hash"}

    out = S().apply(batch).outputs
    np.testing.assert_array_equal(out["met"], [60, 70])
    np.testing.assert_array_equal(out["lead"], [np.nan, 30])
    np.testing.assert_array_equal(out["hash"], batch.index["hash"][1:])


@pytest.mark.parametrize("cut", ["met", "count(jets)", "met * 0"])
def test_non_boolean_cut_raises(batch, cut):
    class S(SelectionTemplate):
        cuts = {"bad": cut}

    with pytest.raises(TemplateError, match="cuts.bad: gave .* values, expected a boolean mask"):
        S().apply(batch)


def test_callable_cut_of_wrong_shape(batch):
    class S(SelectionTemplate):
        cuts = {"bad": lambda scope: np.ones(2, bool)}

    with pytest.raises(TemplateError, match=r"cuts.bad: gave shape \(2,\), expected \(3,\)"):
        S().apply(batch)


def test_bad_expression_names_the_cut(batch):
    with pytest.raises(TemplateError, match="selection cuts.c1"):
        type("S", (SelectionTemplate,), {"cuts": {"c1": "met.mean() > 1"}})()

    class S(SelectionTemplate):
        cuts = {"c2": "jets.pt > 12"}

    with pytest.raises(TemplateError, match="selection cuts.c2.*reduce"):
        S().apply(batch)


def test_jet_level_selection_broadcasts_event_weight(batch):
    class S(SelectionTemplate):
        level = "jets"
        weight = "weight"
        cuts = {"pt": "jets.pt > 12", "eta": "abs(jets.eta) < 2.5"}
        outputs = {"pt": "jets.pt", "met": "met", "ntrk": "count(tracks)"}

    result = S().apply(batch)
    # jet pt 10 20 | 30 5 15, eta .1 -1 | 2 .5 -2.6, weight per jet 1 1 | .5 .5 .5
    assert result.cutflow.as_rows() == [("all", 5, 3.5), ("pt", 3, 2.0), ("eta", 2, 1.5)]
    assert result.mask.tolist() == [False, True, True, False, False]
    np.testing.assert_array_equal(result.outputs["pt"], [20, 30])
    np.testing.assert_array_equal(result.outputs["met"], [50, 70])
    np.testing.assert_array_equal(result.outputs["ntrk"], [2, 0])


def test_cutflow_accumulates_over_chunks(batch):
    tmpl = EventSel()
    total = Cutflow.empty(tmpl.cut_names())
    total += tmpl.apply(batch.take(np.array([True, True, False]))).cutflow
    total += tmpl.apply(batch.take(np.array([False, False, True]))).cutflow
    assert total.as_rows() == tmpl.apply(batch).cutflow.as_rows()


def test_empty_batch(batch):
    empty = batch.take(np.zeros(3, bool))
    result = EventSel().apply(empty)
    assert result.cutflow.as_rows() == [("all", 0, 0.0), ("met", 0, 0.0), ("has_jet", 0, 0.0)]
    assert result.outputs["ht"].shape == (0,)


def test_declared_and_describe(batch):
    tmpl = declared({"level": "jets", "cuts": {"pt": "jets.pt > 12"}, "outputs": {"eta": "jets.eta"}, "weight": "weight"})
    assert tmpl.describe() == {"level": "jets", "cuts": ["pt"], "outputs": ["eta"]}
    result = tmpl.apply(batch)
    assert result.cutflow.as_rows()[1] == ("pt", 3, 2.0)
    np.testing.assert_array_equal(result.outputs["eta"], [-1.0, 2.0, -2.6])


def test_level_with_unknown_collection(batch):
    tmpl = declared({"level": "muons", "cuts": {}})
    with pytest.raises(KeyError, match="unknown collection 'muons'"):
        tmpl.apply(batch)


def test_take_keeps_children_consistent(batch):
    # the selection result is used to slice batches; check the child tables follow
    sub = batch.take(np.array([True, False, True]))
    assert isinstance(sub.tables["tracks"], Table)
    np.testing.assert_array_equal(sub.tables["jets"].counts, [2, 3])
    np.testing.assert_array_equal(sub.tables["tracks"].counts, [1, 2, 0, 0, 3])
    sub = batch.take(np.array([False, False, True]))
    np.testing.assert_array_equal(sub.tables["tracks"].fields["pt"], [4, 5, 6])
    np.testing.assert_array_equal(sub.event_row("tracks"), [0, 0, 0])
