"""The methods on synthetic jets: distributions match the target's, countup's and weighting's guarantees.

Histograms are rebuilt here from the output rows and the input columns (not from the
accumulators of the library), one per class, split and variable, and compared with the
target class's by the two-sample chi2 for weighted histograms: a duplicated jet counts with
weight = its number of copies and variance copies^2. Threshold: p > 0.01 after resampling,
and p < 1e-6 before it, so each check would fail without resampling.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tracerflow.resample import chi2_two_sample, ks_binned, poisson_from_uniform, resample, split_of

from .test_resample_data import CLASSES, chunked, global_id, make_jets, make_spec

P_AFTER = 0.01
P_BEFORE = 1e-6
RESAMPLED = ("train", "val")


@pytest.fixture(scope="module")
def jets():
    return make_jets()


def _split_mask(jets, spec, name):
    return split_of(jets["hash"], list(spec.splits.values()), spec.assignment_seed) == spec.split_names.index(name)


def _per_jet(jets, result):
    """Copies and summed output weight of every input jet in one split's output."""
    gid = global_id(jets, result.source, result.row)
    n = len(jets["pt"])
    copies = np.bincount(gid, minlength=n)
    weight = np.bincount(gid, weights=result.weight.astype(np.float64), minlength=n)
    return copies, weight


def _histograms(jets, spec, selected, contribution):
    """Per variable and class: (sum of contributions, sum of squares) over ``selected`` jets."""
    out = {}
    for name, edges in spec.variables.items():
        x = np.asarray(jets[name], dtype=np.float64)
        per_class = {}
        for cls, label in spec.classes.items():
            m = selected & (jets["flavour"] == label)
            w = contribution[m]
            per_class[cls] = (np.histogram(x[m], edges, weights=w)[0], np.histogram(x[m], edges, weights=w * w)[0])
        out[name] = per_class
    return out


def _in_range(jets, spec):
    ok = np.isin(jets["flavour"], list(spec.classes.values()))
    for name, edges in spec.variables.items():
        ok &= (jets[name] >= edges[0]) & (jets[name] <= edges[-1])
    return ok


def _assert_matches_target(jets, spec, results, by_weight=False):
    in_range = _in_range(jets, spec)
    for split in RESAMPLED:
        mask = _split_mask(jets, spec, split) & in_range
        copies, weight = _per_jet(jets, results[split])
        before = _histograms(jets, spec, mask, np.ones(len(copies)))
        after = _histograms(jets, spec, mask & (copies > 0), weight if by_weight else copies.astype(np.float64))
        for variable in spec.variables:
            t_before, t_after = before[variable][spec.target], after[variable][spec.target]
            for cls in CLASSES:
                if cls == spec.target:
                    continue
                p_before = chi2_two_sample(before[variable][cls][0], t_before[0]).p_value
                test = chi2_two_sample(after[variable][cls][0], t_after[0], after[variable][cls][1], t_after[1])
                assert p_before < P_BEFORE, (split, variable, cls, p_before)
                assert test.p_value > P_AFTER, (split, variable, cls, test)
                assert ks_binned(after[variable][cls][0], t_after[0]) < 0.02


def test_poisson_from_uniform_equals_scipy_ppf():
    rng = np.random.default_rng(3)
    u = rng.random(200_000)
    mean = np.concatenate([rng.uniform(0, 35, 199_000), np.zeros(500), np.full(500, 80.0)])
    assert np.array_equal(poisson_from_uniform(u, mean), stats.poisson.ppf(u, mean).astype(np.int64))
    edge = poisson_from_uniform(np.array([0.0, 1 - 2**-53]), np.array([3.0, 3.0]))
    assert edge[0] == 0 and 15 < edge[1] < 40


@pytest.mark.parametrize("method, upscale", [("pdf", 1), ("pdf", 3), ("countup", 1)])
def test_every_class_follows_the_target(jets, method, upscale):
    spec = make_spec(method=method, upscale_pdf=upscale)
    results = resample(spec, chunked(jets, 50_000))
    _assert_matches_target(jets, spec, results)
    train = results["train"]
    assert np.all(train.clipped_bins == 0) and np.all(train.empty_bins == 0)
    target = spec.target_index
    assert train.after[target] == train.hist_before[target].sum()
    for c in range(len(CLASSES)):
        if c != target:
            assert abs(train.after[c] - train.requested[c]) < 5 * np.sqrt(train.requested[c]) + 0.01 * train.requested[c]


def test_pdf_duplicates_even_while_unique_jets_remain(jets):
    results = resample(make_spec(method="pdf"), chunked(jets, 50_000))
    train = results["train"]
    ujets = train.classes.index("ujets")
    assert train.after[ujets] < train.hist_before[ujets].sum()
    assert np.any((train.label == ujets) & (train.copy > 0))


def test_countup_uses_every_jet_of_a_bin_before_any_duplicate(jets):
    spec = make_spec(method="countup")
    results = resample(spec, chunked(jets, 50_000))
    edges = list(spec.variables.values())
    in_range = _in_range(jets, spec)
    for split in RESAMPLED:
        result = results[split]
        copies, _ = _per_jet(jets, result)
        mask = _split_mask(jets, spec, split) & in_range
        bins = [np.clip(np.searchsorted(e, np.asarray(jets[v], np.float64), side="right") - 1, 0, len(e) - 2)
                for v, e in zip(spec.variables, edges)]
        cell = np.ravel_multi_index(bins, result.hist_before.shape[1:])
        duplicated_bins = 0
        for c, (cls, label) in enumerate(spec.classes.items()):
            m = mask & (jets["flavour"] == label)
            lowest = np.full(cell.max() + 1, np.iinfo(np.int64).max)
            highest = np.full(cell.max() + 1, -1)
            np.minimum.at(lowest, cell[m], copies[m])
            np.maximum.at(highest, cell[m], copies[m])
            used = highest >= 0
            ratio = result.ratio[c].ravel()
            assert np.all(highest[used] - lowest[used] <= 1), cls
            assert np.all(lowest[used] >= np.floor(ratio[used])), cls
            assert np.all(highest[used] <= np.ceil(ratio[used])), cls
            assert np.all(lowest[used & (ratio >= 1)] >= 1), cls
            duplicated_bins += int(np.sum(used & (highest > 1)))
        assert duplicated_bins > 0


def test_weighting_keeps_every_jet_once_and_matches_the_target(jets):
    spec = make_spec(method="weighting")
    results = resample(spec, chunked(jets, 50_000))
    in_range = _in_range(jets, spec)
    for split in RESAMPLED:
        result = results[split]
        copies, weight = _per_jet(jets, result)
        expected = _split_mask(jets, spec, split) & in_range
        assert np.array_equal(copies, expected.astype(np.int64))
        assert np.all(result.copy == 0)
        for c, label in enumerate(spec.classes.values()):
            total = weight[expected & (jets["flavour"] == label)].sum()
            assert total == pytest.approx(result.requested[c], rel=1e-5)
    _assert_matches_target(jets, spec, results, by_weight=True)


def test_none_keeps_every_in_range_jet_once_with_weight_one(jets):
    spec = make_spec(method="none")
    results = resample(spec, chunked(jets, 50_000))
    in_range = _in_range(jets, spec)
    for split in RESAMPLED:
        copies, _ = _per_jet(jets, results[split])
        assert np.array_equal(copies, (_split_mask(jets, spec, split) & in_range).astype(np.int64))
        assert np.all(results[split].weight == 1)


@pytest.mark.parametrize("method", ["pdf", "countup", "weighting"])
def test_auto_fraction_is_the_largest_within_max_upsampling_ratio(jets, method):
    spec = make_spec(method=method, sampling_fraction="auto", max_upsampling_ratio=2.5)
    results = resample(spec, chunked(jets, 50_000))
    t = spec.target_index
    for split in RESAMPLED:
        result = results[split]
        hist = result.hist_before.reshape(len(CLASSES), -1).astype(float)
        others = [c for c in range(len(CLASSES)) if c != t]
        filled = hist[others] > 0
        ratio = result.sampling_fraction * hist[t] / np.where(filled, hist[others], 1.0)
        assert ratio[filled].max() == pytest.approx(spec.max_upsampling_ratio, rel=1e-9)
        assert np.all(result.clipped_bins == 0)
        if method != "weighting":
            assert np.all(result.ratio[others] <= spec.max_upsampling_ratio * (1 + 1e-12))
        assert 0 < result.sampling_fraction < 1


def test_explicit_fraction_beyond_max_ratio_is_clipped_and_reported(jets):
    spec = make_spec(method="countup", sampling_fraction=3.0, max_upsampling_ratio=2.5)
    result = resample(spec, chunked(jets, 50_000))["train"]
    assert result.clipped_bins[spec.target_index] == 0
    assert np.all(result.clipped_bins[1:] > 0)
    assert result.ratio.max() == pytest.approx(2.5)
    assert result.copy.max() <= 2


def test_empty_bins_are_reported_and_ignored_by_auto(jets):
    keep = ~((jets["flavour"] == 4) & (jets["pt"] > 140))
    sparse = {k: v[keep] for k, v in jets.items()}
    spec = make_spec(method="pdf", sampling_fraction="auto", max_upsampling_ratio=4.0)
    result = resample(spec, chunked(sparse, 50_000))["train"]
    cjets = spec.class_names.index("cjets")
    n_eta_bins = len(spec.variables["abs_eta"]) - 1
    assert result.empty_bins[cjets] == n_eta_bins
    assert result.empty_bins[spec.class_names.index("ujets")] == 0
    assert np.isfinite(result.sampling_fraction) and result.sampling_fraction > 0
    assert np.all(result.clipped_bins == 0)


@pytest.mark.parametrize("variables", [
    {"pt": [[20, 100, 8], [100, 150, 5]]},
    {"pt": [[20, 150, 13]], "abs_eta": [[0, 2.5, 3]], "phi": [[-3.2, 3.2, 2]]},
])
def test_any_number_of_variables(jets, variables):
    if "phi" in variables:
        jets = dict(jets, phi=np.random.default_rng(2).uniform(-3.2, 3.2, len(jets["pt"])))
    spec = make_spec(method="countup", variables=variables)
    result = resample(spec, chunked(jets, 50_000))["train"]
    assert result.hist_before.shape == (3,) + tuple(len(e) - 1 for e in spec.variables.values())
    t = spec.target_index
    pt_after = result.hist_after_weighted.sum(axis=tuple(range(2, result.hist_after.ndim)))
    pt_var = result.hist_after_sumw2.sum(axis=tuple(range(2, result.hist_after.ndim)))
    for c in range(3):
        if c != t:
            assert chi2_two_sample(pt_after[c], pt_after[t], pt_var[c], pt_var[t]).p_value > P_AFTER
