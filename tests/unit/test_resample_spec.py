"""The resample spec: bin ranges, defaults, and ValueErrors that name the key at fault."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.resample import ResampleSpec, edges_from_ranges, spec_from_config

from .test_resample_data import make_spec

BLOCK = {
    "variables": {"pt": {"bins": [[20, 250, 23], [250, 1000, 15]]}, "abs_eta": [[0, 2.5, 5]]},
    "classes": {"bjets": 5, "cjets": 4, "ujets": 0},
    "target": "bjets",
    "method": "countup",
}


def test_edges_from_ranges_concatenates_consecutive_ranges():
    edges = edges_from_ranges("pt", [[20, 100, 8], [100, 150, 5]])
    assert np.allclose(edges, [20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150])
    assert np.all(np.diff(edges) > 0)


@pytest.mark.parametrize(
    "ranges, message",
    [
        ([[20, 100, 8], [110, 150, 5]], "contiguous"),
        ([[20, 100, 8], [50, 150, 5]], "contiguous"),
        ([[100, 20, 8]], "low < high"),
        ([[20, 100, 0]], "whole number"),
        ([[20, 100]], r"\[low, high, n\]"),
        ([], "non-empty"),
    ],
)
def test_bad_ranges_name_the_variable(ranges, message):
    with pytest.raises(ValueError, match=rf"resample\.variables\.pt: .*{message}"):
        edges_from_ranges("pt", ranges)
    with pytest.raises(ValueError, match=r"resample\.variables\.pt"):
        make_spec(variables={"pt": ranges, "abs_eta": [[0, 2.5, 4]]})


def test_spec_from_config_reads_umami_style_bins_and_defaults():
    spec = spec_from_config(BLOCK, seed=11)
    assert spec.label == "flavour"
    assert spec.method == "countup"
    assert spec.sampling_fraction == "auto"
    assert list(spec.variables) == ["pt", "abs_eta"]
    assert len(spec.variables["pt"]) == 23 + 15 + 1
    assert spec.splits == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert spec.untouched_splits == ("test",)
    assert spec.target_index == 0 and spec.class_names == ("bjets", "cjets", "ujets")
    assert spec.assignment_seed == 11
    assert spec_from_config({**BLOCK, "split_seed": 3}, seed=11).assignment_seed == 3


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"method": "smote"}, "resample.method"),
        ({"target": "taujets"}, "resample.target"),
        ({"splits": {"train": 0.8, "val": 0.1}}, "resample.splits"),
        ({"splits": {"train": 0.8, "val": 0.3, "test": -0.1}}, "resample.splits.test"),
        ({"sampling_fraction": "half"}, "resample.sampling_fraction"),
        ({"sampling_fraction": 0}, "resample.sampling_fraction"),
        ({"max_upsampling_ratio": 0}, "resample.max_upsampling_ratio"),
        ({"upscale_pdf": 0}, "resample.upscale_pdf"),
        ({"classes": {"bjets": 5, "cjets": 5}}, "resample.classes.cjets"),
        ({"classes": {}}, "resample.classes"),
        ({"untouched_splits": ("tset",)}, "resample.untouched_splits"),
        ({"variables": {"pt": [30, 20]}}, "resample.variables.pt"),
        ({"variables": {"row": [0, 1]}}, "resample.variables.row"),
        ({"label": ""}, "resample.label"),
        ({"seed": "7"}, "resample.seed"),
    ],
)
def test_bad_specs_raise_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make_spec(**overrides)


def test_unknown_and_missing_config_keys_are_named():
    with pytest.raises(ValueError, match=r"resample\.bogus: unknown key"):
        spec_from_config({**BLOCK, "bogus": 1}, seed=1)
    with pytest.raises(ValueError, match=r"resample\.target: missing"):
        spec_from_config({k: v for k, v in BLOCK.items() if k != "target"}, seed=1)
    with pytest.raises(ValueError, match=r"resample\.variables\.pt"):
        spec_from_config({**BLOCK, "variables": {"pt": {"bins": [[20, 100, 8], [90, 150, 5]]}}}, seed=1)


def test_spec_is_immutable_and_edges_read_only():
    spec = make_spec()
    with pytest.raises(AttributeError):
        spec.method = "none"
    with pytest.raises(ValueError):
        spec.variables["pt"][0] = 0.0
    assert isinstance(spec, ResampleSpec)


def test_the_label_may_also_be_a_resampling_variable():
    """Binning in the label itself is what a user asks for when classes should follow the target's
    label distribution (a regression-like label binned, say): accepted, and the result is resampled."""
    import numpy as np

    from tracerflow.resample import resample

    spec = spec_from_config({"variables": {"flavour": [[-0.5, 5.5, 6]]}, "label": "flavour",
                             "classes": {"b": 5, "light": 0}, "target": "b", "method": "none",
                             "splits": {"train": 1.0}}, seed=1)
    chunk = {"flavour": np.array([5, 0, 0, 5]), "hash": np.arange(4, dtype=np.uint64),
             "item": np.zeros(4, np.int32), "source": np.zeros(4, np.int64), "row": np.arange(4)}
    result = resample(spec, lambda: iter([chunk]))["train"]
    assert sorted(result.row.tolist()) == [0, 1, 2, 3]
    assert sorted(result.label.tolist()) == [0, 0, 1, 1]
