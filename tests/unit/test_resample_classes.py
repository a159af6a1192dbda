"""Classes by label value or by sample, and the factors that turn generator weights into physics weights."""
from __future__ import annotations

import pytest

from tracerflow.resample.classes import SAMPLE_CLASS_COLUMN, SINGLE_CLASS, classes_from_config
from tracerflow.resample.inputs import physics_scales


def samples(**labels):
    return {name: {"label": label} for name, label in labels.items()}


def block(classes, label=None, target=None):
    return {"classes": classes, "label": label, "target": target}


def test_label_values_read_from_the_label_column():
    got = classes_from_config(block({"bjets": 5, "cjets": 4, "ujets": 0}, label="flavour", target="bjets"),
                              samples(ttbar=None, zprime=None))
    assert got.names == ("bjets", "cjets", "ujets")
    assert dict(got.values) == {"bjets": 5, "cjets": 4, "ujets": 0}
    assert got.column == "flavour" and got.reads_column and got.target == "bjets"
    assert got.value_of_sample("ttbar") is None


def test_a_list_of_classes_takes_each_samples_label():
    got = classes_from_config(block(["background", "signal"]), samples(ttbar="background", zprime="signal"))
    assert got.names == ("background", "signal")
    assert got.column == SAMPLE_CLASS_COLUMN and not got.reads_column
    assert got.target == "background"
    values = {s: got.value_of_sample(s) for s in ("ttbar", "zprime")}
    assert values["ttbar"] == got.values["background"] != values["zprime"] == got.values["signal"]


def test_classes_may_list_their_samples_and_mix_with_label_values():
    got = classes_from_config(block({"light": 0, "signal": ["zprime"]}, label="flavour", target="signal"),
                              samples(ttbar=None, zprime=None))
    assert got.reads_column and got.column == "flavour"
    assert got.value_of_sample("ttbar") is None
    assert got.value_of_sample("zprime") == got.values["signal"] not in (0,)


def test_no_classes_is_one_class_for_a_regression():
    got = classes_from_config(block(None), samples(zmumu=None))
    assert got.names == (SINGLE_CLASS,) and got.value_of_sample("zmumu") == 0 and not got.reads_column


@pytest.mark.parametrize("resample, sample_labels, key", [
    (block(["background", "signal"]), {"ttbar": "background", "zprime": None}, "samples.zprime.label"),
    (block(["background", "signal"]), {"ttbar": "background", "zprime": "signla"}, "samples.zprime.label"),
    (block(["background", "signal"], label="flavour"), {"ttbar": "background", "zprime": "signal"}, "resample.label"),
    (block({"b": 5, "light": 0}), {"ttbar": None, "zprime": None}, "resample.label"),
    (block(None, label="flavour"), {"ttbar": None, "zprime": None}, "resample.label"),
    (block(["a", "b"], target="c"), {"ttbar": "a", "zprime": "b"}, "resample.target"),
    (block({"a": ["ttbar"], "b": ["ttbar"]}), {"ttbar": None, "zprime": None}, "resample.classes.b[0]"),
    (block({"a": ["nope"], "b": 1}, label="x"), {"ttbar": None, "zprime": None}, "resample.classes.a[0]"),
    (block({"a": ["ttbar"], "b": ["zprime"]}), {"ttbar": "b", "zprime": None}, "samples.ttbar.label"),
])
def test_inconsistent_classes_name_the_key(resample, sample_labels, key):
    with pytest.raises(ValueError) as err:
        classes_from_config(resample, samples(**sample_labels))
    assert str(err.value).startswith(f"{key}: ")


def test_a_predict_only_sample_needs_no_class():
    got = classes_from_config(block(["background", "signal"]), samples(ttbar="background", zprime="signal", data=None),
                              classed=["ttbar", "zprime"])
    assert got.value_of_sample("data") is None


def test_physics_scales_normalise_each_sample_over_all_its_files():
    factors = physics_scales(["a", "a", "b", "c"], [30.0, 10.0, 4.0, 7.0], {"a": 2.0, "b": 0.5, "c": None}, 100.0)
    assert factors == pytest.approx([2.0 * 100 / 40, 2.0 * 100 / 40, 0.5 * 100 / 4, 1.0])


@pytest.mark.parametrize("sums, lumi, key, message", [
    ([0.0], 1.0, "samples.a.cross_section", "positive sum"),
    ([-3.0], 1.0, "samples.a.cross_section", "positive sum"),
    ([3.0], None, "samples.a.cross_section", "project.luminosity"),
])
def test_physics_scales_refuse_what_cannot_be_normalised(sums, lumi, key, message):
    with pytest.raises(ValueError, match=message) as err:
        physics_scales(["a"], sums, {"a": 1.0}, lumi)
    assert str(err.value).startswith(key)


def test_balanced_weights_give_every_class_the_target_total():
    import numpy as np

    from tracerflow.resample.stream import balanced_weights

    weight = np.array([830.0, 820.0, 5.0, 4.0, -1.0, 3.0], np.float32)
    label = np.array([0, 0, 1, 1, 1, 2])
    out = balanced_weights(weight, label, target=1, n_classes=4)
    sums = np.bincount(label, weights=out.astype(np.float64), minlength=4)
    assert sums[:3] == pytest.approx([8.0, 8.0, 8.0])
    assert out[4] < 0 and out[2] / out[3] == pytest.approx(5 / 4)


def _result(available, resampled=True, unlabelled=0):
    from types import SimpleNamespace

    return SimpleNamespace(split="train", available=available, resampled=resampled, unlabelled=unlabelled)


def test_check_split_stops_on_nothing_to_learn_and_warns_on_a_missing_class():
    import numpy as np

    from tracerflow.resample import spec_from_config
    from tracerflow.resample.stream import EmptySplit, check_split

    spec = spec_from_config({"variables": {"pt": [[0, 1, 1]]}, "label": "l", "classes": {"a": 0, "b": 1, "c": 2},
                             "target": "b", "method": "countup"}, seed=1)
    with pytest.raises(EmptySplit, match="'train': no labelled rows .5 rows carry no class"):
        check_split(_result(np.array([0, 0, 0]), unlabelled=5), spec)
    with pytest.raises(EmptySplit, match="target class 'b' has no rows"):
        check_split(_result(np.array([4, 0, 3])), spec)
    assert check_split(_result(np.array([4, 2, 0])), spec) == ["resample split 'train': class 'c' has no rows"]
    assert check_split(_result(np.array([0, 0, 0]), resampled=False), spec) == [
        f"resample split 'train': class {c!r} has no rows" for c in "abc"]
