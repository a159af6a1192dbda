"""The resampling report (JSON-ready numbers, chi2 and KS) and its deterministic plots."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from tracerflow.resample import chi2_two_sample, ks_binned, plot_report, project, resample, resample_report

from .test_resample_data import chunked, make_jets, make_spec


@pytest.fixture(scope="module")
def run():
    jets = make_jets(60_000)
    spec = make_spec(method="countup")
    return spec, resample(spec, chunked(jets, 20_000))


def test_chi2_two_sample_matches_the_unweighted_formula():
    n = np.array([10.0, 20.0, 30.0, 0.0])
    m = np.array([12.0, 18.0, 35.0, 0.0])
    N, M = n.sum(), m.sum()
    expected = np.sum((N * m[:3] - M * n[:3]) ** 2 / (N**2 * m[:3] + M**2 * n[:3]))
    result = chi2_two_sample(n, m)
    assert result.statistic == pytest.approx(expected)
    assert result.ndf == 2
    assert result.p_value == pytest.approx(stats.chi2.sf(expected, 2))
    assert chi2_two_sample(n, 3 * n, n, 9 * n).statistic == pytest.approx(0.0)
    assert np.isnan(chi2_two_sample(np.array([5.0]), np.array([4.0])).p_value)


def test_chi2_two_sample_is_calibrated_for_weighted_samples():
    rng = np.random.default_rng(5)
    edges = np.linspace(0, 1, 11)
    p_values = []
    for _ in range(300):
        a, b = rng.random(2000), rng.random(3000)
        wa = rng.exponential(1.0, 2000)
        h = [np.histogram(x, edges, weights=w)[0] for x, w in ((a, wa), (a, wa * wa), (b, None))]
        p_values.append(chi2_two_sample(h[0], h[2], h[1], h[2]).p_value)
    assert stats.kstest(p_values, "uniform").pvalue > 1e-3


def test_ks_binned_and_projection():
    assert ks_binned(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert ks_binned(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(0.0)
    hist = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(project(hist, 0), hist.sum(axis=2))
    assert np.array_equal(project(hist, 1), hist.sum(axis=1))


def test_report_is_json_and_consistent(run):
    spec, results = run
    report = resample_report(results, spec)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    train = report["splits"]["train"]
    assert train["resampled"] and train["sampling_fraction"] == 1.0
    assert train["rows"] == len(results["train"])
    for name, block in train["classes"].items():
        assert block["after"] == block["unique"] + block["duplicates"]
        assert block["available"] == block["in_range"] + block["out_of_range_dropped"]
        assert 0 < block["unique_fraction"] <= 1
    assert train["classes"]["bjets"]["duplicates"] == 0
    assert train["classes"]["cjets"]["duplicates"] > 0
    assert train["unlabelled_dropped"] == results["train"].unlabelled > 0
    assert train["out_of_range_dropped"] > 0
    for variable in spec.variables:
        for cls in ("cjets", "ujets"):
            block = train["agreement"][variable][cls]
            assert block["before"]["p_value"] < 1e-6
            assert block["after"]["p_value"] > 0.01
            assert block["after"]["ndf"] == len(spec.variables[variable]) - 2
            assert block["after"]["ks"] < block["before"]["ks"]
    test = report["splits"]["test"]
    assert not test["resampled"] and test["sampling_fraction"] is None and test["out_of_range_dropped"] == 0
    assert "Gagunashvili" in report["tests"]["chi2"]


def test_plots_are_written_and_byte_identical(run, tmp_path):
    spec, results = run
    first = plot_report({s: results[s] for s in ("train", "test")}, spec, tmp_path / "a")
    second = plot_report({"train": results["train"]}, spec, tmp_path / "b")
    assert [p.name for p in first] == [f"resample_{s}_{v}.png" for s in ("train", "test") for v in spec.variables]
    for a, b in zip(first, second):
        data = a.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert data == b.read_bytes()
        assert b"Software" not in data
