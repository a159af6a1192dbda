"""Vectorised config expressions on hand-built batches (events > jets > tracks)."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.columns_scope import Scope, ScopeError
from tracerflow.templates.expressions import ExpressionError, compile_expression

NAN = np.nan


def ev(text, batch, level="event"):
    return compile_expression(text)(Scope(batch, level))


def check_close(got, expected):
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- arithmetic and logic

@pytest.mark.parametrize(
    "text, expected",
    [
        ("met * 2 + 1", [101, 121, 141]),
        ("met - 10 / 2", [45, 55, 65]),
        ("met ** 2", [2500, 3600, 4900]),
        ("met % 7", [1, 4, 0]),
        ("met // 7", [7, 8, 10]),
        ("-met + +met", [0, 0, 0]),
        ("(met + 10) * weight", [60, 140, 40]),
        ("2 ** 3", [8, 8, 8]),
        ("pi", [np.pi] * 3),
    ],
)
def test_arithmetic(batch, text, expected):
    check_close(ev(text, batch), expected)


def test_scalar_result_is_broadcast_to_scope_rows(batch):
    out = ev("1 + 2", batch, "jets")
    assert out.shape == (5,)
    check_close(out, [3] * 5)
    out[0] = 99  # a writable copy, not a broadcast view
    assert ev("true", batch).tolist() == [True, True, True]
    assert ev("false", batch, "tracks").tolist() == [False] * 6


@pytest.mark.parametrize(
    "text, expected",
    [
        ("jets.pt > 12", [False, True, True, False, True]),
        ("jets.pt >= 20", [False, True, True, False, False]),
        ("jets.pt == 5", [False, False, False, True, False]),
        ("jets.pt != 5", [True, True, True, False, True]),
        ("10 <= jets.pt < 20", [True, False, False, False, True]),
        ("0 < jets.eta < 1 < jets.pt", [True, False, False, True, False]),
        ("jets.pt > 12 and jets.eta > 0", [False, False, True, False, False]),
        ("jets.pt < 6 or jets.eta < -2", [False, False, False, True, True]),
        ("not (jets.pt > 12)", [True, False, False, True, False]),
        ("jets.pt > 12 and jets.eta > 0 or jets.pt == 5", [False, False, True, True, False]),
        ("(jets.pt > 12) & (jets.eta < 0)", [False, True, False, False, True]),
        ("(jets.pt > 12) | (jets.eta > 0)", [True, True, True, True, True]),
    ],
)
def test_comparisons_and_logic(batch, text, expected):
    out = ev(text, batch, "jets")
    assert out.dtype == bool
    assert out.tolist() == expected


def test_chained_comparison_evaluates_pairwise(batch):
    # a < b < c is (a < b) and (b < c), not (a < b) < c
    assert ev("0 < met < 55", batch).tolist() == [True, False, False]
    assert ev("100 > met > 55 > 0", batch).tolist() == [False, True, True]


# ---------------------------------------------------------------- functions

def test_whitelisted_functions(batch):
    check_close(ev("abs(jets.eta)", batch, "jets"), [0.1, 1.0, 2.0, 0.5, 2.6])
    check_close(ev("sqrt(met - 14)", batch), [6, np.sqrt(46), np.sqrt(56)])
    check_close(ev("where(jets.pt > 12, 1, 0)", batch, "jets"), [0, 1, 1, 0, 1])
    check_close(ev("clip(jets.pt, 6, 25)", batch, "jets"), [10, 20, 25, 6, 15])
    check_close(ev("minimum(jets.pt, 12)", batch, "jets"), [10, 12, 12, 5, 12])
    check_close(ev("maximum(jets.pt, 12)", batch, "jets"), [12, 20, 30, 12, 15])
    check_close(ev("hypot(3, met - 46)", batch), [5, np.hypot(3, 14), np.hypot(3, 24)])
    check_close(ev("log(exp(weight))", batch), [1, 2, 0.5])
    check_close(ev("arctan2(1, 1)", batch), [np.pi / 4] * 3)
    check_close(ev("sign(jets.eta)", batch, "jets"), [1, -1, 1, 1, -1])
    assert ev("isnan(max(jets.pt))", batch).tolist() == [False, True, False]
    assert ev("isfinite(min(jets.pt))", batch).tolist() == [True, False, True]


def test_delta_phi_wraps_into_minus_pi_pi(batch):
    assert ev("delta_phi(3, -3)", batch)[0] == pytest.approx(6 - 2 * np.pi)
    assert ev("delta_phi(-3, 3)", batch)[0] == pytest.approx(2 * np.pi - 6)
    assert ev("delta_phi(0.5, 0.2)", batch)[0] == pytest.approx(0.3)
    out = ev("delta_phi(jets.phi, 0)", batch, "jets")
    assert np.all(out >= -np.pi) and np.all(out < np.pi)
    check_close(out, [0, 3, -3, 1, 2])
    # jets at phi 3 and -3 are 0.28 apart, not 6
    out = ev("delta_r(jets.eta, jets.phi, 0, -3)", batch, "jets")
    check_close(out, [np.hypot(0.1, 3), np.hypot(1.0, 6 - 2 * np.pi), np.hypot(2.0, 0), np.hypot(0.5, 2 * np.pi - 4),
                np.hypot(2.6, 2 * np.pi - 5)])


# ---------------------------------------------------------------- reductions

def test_reductions_at_event_level(batch):
    check_close(ev("count(jets)", batch), [2, 0, 3])
    assert ev("count(jets)", batch).dtype == np.int64
    check_close(ev("sum(jets.pt)", batch), [30, 0, 50])
    check_close(ev("max(jets.pt)", batch), [20, NAN, 30])
    check_close(ev("min(jets.pt)", batch), [10, NAN, 5])
    check_close(ev("at(jets.pt, 0)", batch), [10, NAN, 30])
    check_close(ev("at(jets.pt, 1)", batch), [20, NAN, 5])
    check_close(ev("at(jets.pt, 2)", batch), [NAN, NAN, 15])
    check_close(ev("at(jets.pt, 3)", batch), [NAN, NAN, NAN])
    check_close(ev("sum(jets.pt > 12)", batch), [1, 0, 2])
    check_close(ev("max(abs(jets.eta))", batch), [1.0, NAN, 2.6])


def test_reductions_over_grandchildren(batch):
    check_close(ev("count(tracks)", batch), [3, 0, 3])
    check_close(ev("sum(tracks.pt)", batch), [6, 0, 15])
    check_close(ev("max(tracks.d0)", batch), [0.03, NAN, 0.5])
    check_close(ev("at(tracks.pt, 1)", batch), [2, NAN, 5])


def test_reductions_at_collection_level(batch):
    check_close(ev("count(tracks)", batch, "jets"), [1, 2, 0, 0, 3])
    check_close(ev("sum(tracks.pt)", batch, "jets"), [1, 5, 0, 0, 15])
    check_close(ev("max(tracks.pt)", batch, "jets"), [1, 3, NAN, NAN, 6])
    check_close(ev("min(tracks.pt)", batch, "jets"), [1, 2, NAN, NAN, 4])
    check_close(ev("at(tracks.pt, 1)", batch, "jets"), [NAN, 3, NAN, NAN, 5])


def test_reduction_arguments_broadcast_parents(batch):
    # event weight and jet pt broadcast down to the tracks inside the reduction
    check_close(ev("sum(tracks.pt * weight)", batch), [6, 0, 7.5])
    check_close(ev("sum(tracks.pt / jets.pt)", batch), [0.35, 0, 1.0])
    check_close(ev("sum(tracks.pt / jets.pt)", batch, "jets"), [0.1, 0.25, 0, 0, 1.0])
    check_close(ev("count(jets) + sum(jets.pt) / met", batch), [2 + 30 / 50, 0, 3 + 50 / 70])


def test_reduction_of_empty_batch(batch):
    empty = batch.take(np.zeros(3, bool))
    assert ev("count(jets)", empty).shape == (0,)
    assert ev("max(tracks.pt)", empty).shape == (0,)
    assert ev("met > 1", empty).shape == (0,)


# ---------------------------------------------------------------- broadcasting

def test_event_scalars_broadcast_to_children(batch):
    check_close(ev("met", batch, "jets"), [50, 50, 70, 70, 70])
    check_close(ev("met", batch, "tracks"), [50, 50, 50, 70, 70, 70])
    check_close(ev("jets.pt / met", batch, "jets"), [0.2, 0.4, 30 / 70, 5 / 70, 15 / 70])
    check_close(ev("jets.pt", batch, "tracks"), [10, 20, 20, 15, 15, 15])
    check_close(ev("tracks.pt / jets.pt", batch, "tracks"), [0.1, 0.1, 0.15, 4 / 15, 5 / 15, 6 / 15])
    check_close(ev("hash", batch, "jets"), batch.index["hash"][[0, 0, 2, 2, 2]])


def test_child_field_at_parent_level_needs_a_reduction(batch):
    with pytest.raises(ExpressionError) as info:
        ev("jets.pt > 10", batch)
    message = str(info.value)
    assert "jets.pt > 10" in message
    assert "'jets.pt'" in message and "reduce" in message
    with pytest.raises(ExpressionError, match="reduce"):
        ev("tracks.pt", batch, "jets")


def test_reduction_errors(batch):
    with pytest.raises(ExpressionError, match="needs values of a collection below"):
        ev("sum(met)", batch)
    with pytest.raises(ExpressionError, match="is not below"):
        ev("sum(jets.pt)", batch, "tracks")
    with pytest.raises(ExpressionError, match="needs at least one collection field"):
        ev("sum(1)", batch)


def test_unknown_names(batch):
    with pytest.raises(ExpressionError) as info:
        ev("nothere * 2", batch)
    assert "nothere * 2" in str(info.value) and "nothere" in str(info.value)
    with pytest.raises(ExpressionError, match="unknown collection 'muons'"):
        ev("max(muons.pt)", batch)
    with pytest.raises(ExpressionError, match="unknown field 'mass' of jets"):
        ev("sum(jets.mass)", batch)


def test_count_of_unknown_collection_raises_expression_error(batch):
    with pytest.raises(ExpressionError, match="muons"):
        ev("count(muons)", batch)


# ---------------------------------------------------------------- forbidden constructs

@pytest.mark.parametrize(
    "text, what",
    [
        ("jets.pt.sum()", "calling"),
        ("met.__class__()", "calling"),
        ("lambda x: x", "Lambda"),
        ("b'abc' == met", "constant"),
        ("__import__('os')", "calling"),
        ("open('/etc/passwd')", "calling"),
        ("jets.pt[0]", "Subscript"),
        ("clip(met, 0, a_max=5)", "keyword arguments"),
        ("met if weight else 0", "IfExp"),
        ("[met, weight]", "List"),
        ("(x for x in met)", "GeneratorExp"),
        ("met @ weight", "MatMult"),
        ("met << 2", "LShift"),
        ("met is None", "Is"),
        ("met in weight", "In"),
        ("count(jets.pt)", "count()"),
        ("at(jets.pt)", "at()"),
        ("at(jets.pt, met)", "at()"),
        ("(met)(1)", "calling"),
        ("b'x'", "constant"),
        ("None", "constant"),
    ],
)
def test_forbidden_constructs(text, what):
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    message = str(info.value)
    assert repr(text) in message
    assert what in message


def test_statements_do_not_parse():
    for text in ("import os", "x = 1", "del met"):
        with pytest.raises(ExpressionError) as info:
            compile_expression(text)
        assert repr(text) in str(info.value)
        assert "cannot parse" in str(info.value)


def test_expression_error_is_a_value_error():
    assert issubclass(ExpressionError, ValueError)
    assert issubclass(ScopeError, KeyError)


def test_names_lists_columns_read(batch):
    expr = compile_expression("sum(jets.pt) / met + pi + count(tracks) + at(tracks.d0, 0)")
    assert expr.names == {"jets.pt", "met", "tracks.d0"}
    assert compile_expression(" met > 1 ").names == {"met"}
    assert compile_expression(5).text == "5"


# ---------------------------------------------------------------- the sample a row belongs to

def test_sample_is_the_rows_sample_name(batch):
    """``sample`` reads the sample's name (the index column counts from 0 in every file), at every level."""
    from dataclasses import replace

    named = replace(batch, sample_names=("zmumu", "hzz"))
    named.index["sample"] = np.array([1, 0, 1], np.uint16)
    assert ev("sample == 'hzz'", named).tolist() == [True, False, True]
    assert ev("(sample == 'zmumu') * 2", named).tolist() == [0, 2, 0]
    jets = ev("sample != 'hzz'", named, "jets")
    assert jets.tolist() == np.repeat([False, True, False], named.tables["jets"].counts).tolist()


def test_sample_index_is_not_an_expression_field(batch):
    """Without sample names, ``sample`` is unknown rather than a per-file number that reads 0 everywhere."""
    with pytest.raises(ExpressionError, match="unknown field 'sample'"):
        ev("sample == 0", batch)
