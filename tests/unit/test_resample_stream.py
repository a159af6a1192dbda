"""The streaming driver: chunking independence, seeds, splits by event, the untouched test split."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.resample import resample, split_of

from .test_resample_data import chunked, global_id, make_jets, make_spec

ARRAYS = ("source", "row", "hash", "item", "label", "weight", "copy")


@pytest.fixture(scope="module")
def jets():
    return make_jets()


def _same(a, b):
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ARRAYS)


@pytest.mark.parametrize("method", ["pdf", "countup"])
def test_result_does_not_depend_on_chunking(jets, method):
    spec = make_spec(method=method, upscale_pdf=2 if method == "pdf" else 1)
    small = resample(spec, chunked(jets, 1000))
    large = resample(spec, chunked(jets, 70_000))
    backwards = resample(spec, chunked(jets, 30_000, reverse=True))
    for split in spec.splits:
        assert len(small[split]) > 0
        assert _same(small[split], large[split]), split
        assert _same(small[split], backwards[split]), split
        assert np.array_equal(small[split].hist_after, large[split].hist_after)


def test_same_seed_same_arrays_other_seed_other_draw(jets):
    spec = make_spec(method="pdf")
    first = resample(spec, chunked(jets, 50_000))
    again = resample(make_spec(method="pdf"), chunked(jets, 50_000))
    other = resample(make_spec(method="pdf", seed=8, split_seed=7), chunked(jets, 50_000))
    for split in spec.splits:
        assert _same(first[split], again[split])
    assert not np.array_equal(first["train"].row, other["train"].row)
    copies = [np.bincount(global_id(jets, r["train"].source, r["train"].row), minlength=len(jets["pt"]))
              for r in (first, other)]
    assert not np.array_equal(*copies)


@pytest.mark.parametrize("method", ["none", "weighting"])
def test_other_seed_reorders_the_same_jets(jets, method):
    base = resample(make_spec(method=method), chunked(jets, 50_000))
    other = resample(make_spec(method=method, seed=8, split_seed=7), chunked(jets, 50_000))
    for split in base:
        a, b = base[split], other[split]
        assert not np.array_equal(a.row, b.row)
        order_a = np.lexsort((a.row, a.source))
        order_b = np.lexsort((b.row, b.source))
        for key in ARRAYS:
            assert np.array_equal(getattr(a, key)[order_a], getattr(b, key)[order_b]), (split, key)


def test_another_split_seed_moves_events(jets):
    base = resample(make_spec(method="none"), chunked(jets, 50_000))
    moved = resample(make_spec(method="none", split_seed=99), chunked(jets, 50_000))
    assert set(base["test"].hash.tolist()) != set(moved["test"].hash.tolist())


def test_splits_follow_fractions_and_keep_events_together(jets):
    spec = make_spec(method="countup")
    results = resample(spec, chunked(jets, 50_000))
    events = np.unique(jets["hash"])
    split = split_of(events, list(spec.splits.values()), spec.assignment_seed)
    for k, (name, fraction) in enumerate(spec.splits.items()):
        share = np.mean(split == k)
        assert abs(share - fraction) < 5 * np.sqrt(fraction * (1 - fraction) / len(events)), name
    hashes = [np.unique(r.hash) for r in results.values()]
    assert sum(len(h) for h in hashes) == len(np.unique(np.concatenate(hashes)))
    for k, result in enumerate(results.values()):
        assert np.all(np.isin(result.hash, events[split == k]))


def test_test_split_is_untouched(jets):
    spec = make_spec(method="pdf", sampling_fraction="auto", max_upsampling_ratio=3.0)
    results = resample(spec, chunked(jets, 50_000))
    test = results["test"]
    in_test = split_of(jets["hash"], list(spec.splits.values()), spec.assignment_seed) == spec.split_names.index("test")
    labelled = np.isin(jets["flavour"], list(spec.classes.values()))
    expected = np.flatnonzero(in_test & labelled)
    got = np.sort(global_id(jets, test.source, test.row))
    assert np.array_equal(got, expected)
    assert not test.resampled and test.method == "none"
    assert np.all(test.copy == 0) and np.all(test.weight == 1)
    beyond = jets["pt"][got] > spec.variables["pt"][-1]
    assert beyond.any() and test.out_of_range.sum() == beyond.sum()
    label_of = {v: i for i, v in enumerate(spec.classes.values())}
    order = np.argsort(global_id(jets, test.source, test.row))
    assert np.array_equal(test.label[order], np.vectorize(label_of.get)(jets["flavour"][expected]))


def test_dropped_jets_are_counted(jets):
    spec = make_spec(method="countup")
    results = resample(spec, chunked(jets, 50_000))
    split = split_of(jets["hash"], list(spec.splits.values()), spec.assignment_seed)
    unlabelled = ~np.isin(jets["flavour"], list(spec.classes.values()))
    outside = ~unlabelled & ((jets["pt"] < 20) | (jets["pt"] > 150))
    for k, name in enumerate(spec.splits):
        assert results[name].unlabelled == np.sum(unlabelled & (split == k))
        assert results[name].out_of_range.sum() == np.sum(outside & (split == k))
    train = results["train"]
    assert np.array_equal(train.available, train.hist_before.reshape(3, -1).sum(axis=1) + train.out_of_range)


def test_output_weight_carries_the_input_weight(jets):
    weighted = dict(jets, weight=np.full(len(jets["pt"]), 0.5))
    plain = resample(make_spec(method="weighting"), chunked(jets, 50_000))
    halved = resample(make_spec(method="weighting"), chunked(weighted, 50_000))
    assert np.allclose(halved["train"].weight, plain["train"].weight * 0.5)
    assert np.array_equal(halved["train"].hist_after_weighted, plain["train"].hist_after_weighted)


def test_two_passes_must_see_the_same_jets(jets):
    spec = make_spec(method="countup")
    calls = []

    def chunks():
        calls.append(1)
        n = 100_000 if len(calls) == 1 else 90_000
        yield {k: v[:n] for k, v in jets.items() if k != "gid"}

    with pytest.raises(RuntimeError, match="two passes"):
        resample(spec, chunks)


def test_missing_column_and_empty_input():
    spec = make_spec(method="pdf")
    with pytest.raises(KeyError, match="abs_eta"):
        resample(spec, lambda: iter([{"pt": np.ones(3), "flavour": np.zeros(3), "hash": np.zeros(3, np.uint64),
                                      "item": np.zeros(3), "source": np.zeros(3), "row": np.arange(3)}]))
    empty = resample(spec, lambda: iter(()))
    for result in empty.values():
        assert len(result) == 0 and result.copy.dtype == np.int32 and result.hash.dtype == np.uint64
