"""BuildEvents on small ROOT files written with uproot: values, chunking, filters and errors."""
from __future__ import annotations

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot

from tracerflow.events.build import InputError, build_events
from tracerflow.events.entries import EntryFilter
from tracerflow.events.source import RootSource, SourceError
from tracerflow.hashing import event_hashes
from tracerflow.io.events_file import EventsFile
from tracerflow.io.h5target import read_root_attrs
from tracerflow.templates.event import Collection, EventTemplate

from .helpers import write_root

N = 40


class Template(EventTemplate):
    leaves = {"met": "MET", "run": "run", "nlep": "nlep"}
    collections = {
        "jets": Collection(branches={"pt": "jet_pt", "eta": "jet_eta"}),
        "tracks": Collection(branches={"pt": "trk_pt"}, parent="jets", link="trk_jet"),
    }
    derived = {"ht": "sum(jets.pt)"}


def branches(n=N, seed=0):
    rng = np.random.default_rng(seed)
    njet = rng.integers(0, 4, n)
    njet[3] = 0
    ntrk = rng.integers(0, 5, n)
    jet_pt = ak.unflatten(rng.uniform(20, 100, int(njet.sum())).astype(np.float32), njet)
    jet_eta = ak.unflatten(rng.uniform(-2.5, 2.5, int(njet.sum())).astype(np.float32), njet)
    trk_pt = ak.unflatten(rng.uniform(1, 10, int(ntrk.sum())), ntrk)
    # each track points at a jet of its event, or -1, or one past the last jet
    trk_jet = ak.unflatten(
        np.concatenate([rng.integers(-1, nj + 1, nt) for nj, nt in zip(njet, ntrk)]).astype(np.int32), ntrk)
    return {
        "run": np.repeat(np.array([1, 2], np.int32), [n // 2, n - n // 2]),
        "event_number": np.arange(n, dtype=np.int64) % (n // 2) + 100,
        "MET": rng.uniform(0, 80, n),
        "nlep": rng.integers(0, 3, n).astype(np.int16),
        "jet_pt": jet_pt,
        "jet_eta": jet_eta,
        "trk_pt": trk_pt,
        "trk_jet": trk_jet,
    }


@pytest.fixture(scope="module")
def root_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("root") / "sample.root"
    write_root(path, branches())
    return path


def build(src, out, **kw):
    args = dict(sample="ttbar", logical_file="mc/sample.root", tree="nominal", config_digest="dg",
                created_by="BuildEvents(test)")
    args.update(kw)
    template = args.pop("template", Template())
    return build_events(src, out, template, **args)


def read_all(path):
    with EventsFile(path) as f:
        return f.read()


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[:]) if isinstance(obj, h5py.Dataset) else None)
    return out


# ---------------------------------------------------------------- values

def test_values_equal_uproot(root_file, tmp_path):
    out = tmp_path / "events.h5"
    stats = build(root_file, out)
    assert (stats.entries_in_tree, stats.events, stats.chunks) == (N, N, 1)
    tree = uproot.open(root_file)["nominal"]
    batch = read_all(out)
    np.testing.assert_array_equal(batch.index["entry"], np.arange(N))
    np.testing.assert_array_equal(batch.index["hash"], event_hashes("ttbar", "mc/sample.root", "nominal", np.arange(N)))
    np.testing.assert_array_equal(batch.event["met"], tree["MET"].array(library="np"))
    np.testing.assert_array_equal(batch.event["run"], tree["run"].array(library="np"))
    assert batch.event["nlep"].dtype == np.int16
    jet_pt = tree["jet_pt"].array()
    np.testing.assert_array_equal(batch.tables["jets"].counts, ak.to_numpy(ak.num(jet_pt)))
    np.testing.assert_array_equal(batch.tables["jets"].fields["pt"], ak.to_numpy(ak.flatten(jet_pt)))
    assert batch.tables["jets"].fields["pt"].dtype == np.float32
    np.testing.assert_allclose(batch.event["ht"], ak.to_numpy(ak.sum(jet_pt, axis=1)), rtol=1e-5)
    # tracks: hand-made regrouping of the uproot arrays by (event, jet)
    trk_pt, trk_jet = tree["trk_pt"].array(), tree["trk_jet"].array()
    expected_pt, expected_counts = [], []
    for ev in range(N):
        nj = len(jet_pt[ev])
        for j in range(nj):
            sel = [float(p) for p, l in zip(trk_pt[ev], trk_jet[ev]) if l == j]
            expected_pt.extend(sel)
            expected_counts.append(len(sel))
    np.testing.assert_array_equal(batch.tables["tracks"].counts, expected_counts)
    np.testing.assert_array_equal(batch.tables["tracks"].fields["pt"], expected_pt)
    attrs = read_root_attrs(out)
    assert attrs["complete"] is True
    assert attrs["sample"] == "ttbar" and attrs["file"] == "mc/sample.root" and attrs["tree"] == "nominal"
    assert attrs["entries_in_tree"] == N and attrs["config_digest"] == "dg"


def test_chunking_gives_identical_output(root_file, tmp_path):
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    build(root_file, one, chunk_size=1000)
    stats = build(root_file, many, chunk_size=7)
    assert stats.chunks == 6
    a, b = datasets(one), datasets(many)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a[key].dtype == b[key].dtype, key


def test_threads_give_identical_output(root_file, tmp_path):
    build(root_file, tmp_path / "a.h5", chunk_size=9)
    build(root_file, tmp_path / "b.h5", chunk_size=9, threads=2)
    a, b = datasets(tmp_path / "a.h5"), datasets(tmp_path / "b.h5")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
    "flt, expected",
    [
        (EntryFilter(event_start=5, event_stop=20, skip_entry_list=(7, 8), n_skip=2), list(range(9, 20))),
        (EntryFilter(entry_list=(3, 0, 39, 17)), [0, 3, 17, 39]),
        (EntryFilter(run_event_list=((1, 105), (2, 101), (2, 100))), [5, 20, 21]),
        (EntryFilter(event_start=18, skip_run_event_list=((1, 119), (2, 100))), list(range(18, 19)) + list(range(21, 40))),
    ],
    ids=["range-skip-nskip", "entry-list", "run-event", "skip-run-event"],
)
def test_entry_filters(root_file, tmp_path, flt, expected):
    full = read_all(_built(root_file, tmp_path / "full.h5"))
    out = tmp_path / "f.h5"
    stats = build(root_file, out, entry_filter=flt, chunk_size=4)
    batch = read_all(out)
    assert batch.index["entry"].tolist() == expected
    assert stats.events == len(expected) and stats.entries_in_tree == N
    mask = np.isin(np.arange(N), expected)
    ref = full.take(mask)
    for k in ref.event:
        np.testing.assert_array_equal(batch.event[k], ref.event[k], err_msg=k)
    np.testing.assert_array_equal(batch.index["hash"], ref.index["hash"])
    for name in ref.tables:
        np.testing.assert_array_equal(batch.tables[name].counts, ref.tables[name].counts)
        np.testing.assert_array_equal(batch.tables[name].fields["pt"], ref.tables[name].fields["pt"])


def _built(src, out):
    if not out.exists():
        build(src, out)
    return out


def test_filter_selecting_nothing_writes_an_empty_target(root_file, tmp_path):
    out = tmp_path / "empty.h5"
    stats = build(root_file, out, entry_filter=EntryFilter(event_start=100))
    assert (stats.events, stats.chunks) == (0, 0)
    with EventsFile(out) as f:
        assert len(f) == 0
        assert f.collections == ["jets", "tracks"]
        batch = f.read()
    assert batch.event["met"].shape == (0,)
    assert batch.tables["tracks"].fields["pt"].shape == (0,)


# ---------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    src = tmp_path / "nope.root"
    with pytest.raises(SourceError) as info:
        build(src, tmp_path / "o.h5")
    assert str(src) in str(info.value) and "no such file" in str(info.value)
    assert not (tmp_path / "o.h5").exists()


def test_corrupt_file(tmp_path):
    src = tmp_path / "corrupt.root"
    src.write_bytes(b"root\x00" + bytes(range(256)) * 8)
    with pytest.raises(SourceError) as info:
        build(src, tmp_path / "o.h5")
    assert str(src) in str(info.value) and "cannot be read as a ROOT file" in str(info.value)
    assert list(tmp_path.iterdir()) == [src]


def test_truncated_file(root_file, tmp_path):
    src = tmp_path / "truncated.root"
    src.write_bytes(root_file.read_bytes()[:2000])
    with pytest.raises(SourceError) as info:
        build(src, tmp_path / "o.h5")
    assert str(src) in str(info.value)
    assert not (tmp_path / "o.h5").exists()


def test_missing_tree(root_file, tmp_path):
    with pytest.raises(SourceError) as info:
        build(root_file, tmp_path / "o.h5", tree="Delphes")
    message = str(info.value)
    assert str(root_file) in message and "no tree 'Delphes'" in message and "nominal" in message


def test_missing_branch_names_branch_and_config_key(root_file, tmp_path):
    class Bad(Template):
        leaves = {"met": "MET", "ht": "HT_branch"}

    with pytest.raises(SourceError) as info:
        build(root_file, tmp_path / "o.h5", template=Bad())
    message = str(info.value)
    assert str(root_file) in message
    assert "'HT_branch'" in message and "event.template" in message
    assert not (tmp_path / "o.h5").exists()


def test_missing_run_event_branches(root_file, tmp_path):
    flt = EntryFilter(run_event_list=((1, 100),), run_event_branches=("RunNumber", "EventNumber"))
    with pytest.raises(SourceError) as info:
        build(root_file, tmp_path / "o.h5", entry_filter=flt)
    assert "'RunNumber'" in str(info.value) and "event.run_event_branches" in str(info.value)


def test_empty_tree(tmp_path):
    src = tmp_path / "empty.root"
    write_root(src, {"MET": np.zeros(0), "run": np.zeros(0, np.int32)})

    class Flat(EventTemplate):
        leaves = {"met": "MET", "run": "run"}

    with pytest.raises(InputError) as info:
        build(src, tmp_path / "o.h5", template=Flat())
    assert str(src) in str(info.value) and "'nominal'" in str(info.value) and "0 entries" in str(info.value)
    assert not (tmp_path / "o.h5").exists()


def nan_file(tmp_path, where: str, entry: int, value: float = np.nan):
    data = branches()
    if where == "MET":
        met = data["MET"].copy()
        met[entry] = value
        data["MET"] = met
    else:
        lists = data["trk_pt"].tolist()
        for i in range(len(lists)):
            if i >= entry and lists[i]:
                lists[i][-1] = value
                break
        data["trk_pt"] = ak.Array(lists)
    src = tmp_path / f"nan_{where}.root"
    write_root(src, data)
    return src


def test_nan_in_jagged_branch_names_branch_and_entry(tmp_path):
    src = nan_file(tmp_path, "trk_pt", 12)
    first = next(i for i, x in enumerate(branches()["trk_pt"].tolist()) if i >= 12 and x)
    with pytest.raises(InputError) as info:
        build(src, tmp_path / "o.h5", chunk_size=5)
    message = str(info.value)
    assert str(src) in message and "'trk_pt'" in message and f"entry {first}" in message
    assert "non_finite" in message
    assert not (tmp_path / "o.h5").exists()


def test_nan_in_flat_branch_in_first_entry_of_a_chunk(tmp_path):
    src = nan_file(tmp_path, "MET", 10)
    with pytest.raises(InputError) as info:
        build(src, tmp_path / "o.h5", chunk_size=5)
    assert "'MET'" in str(info.value) and "entry 10" in str(info.value)


def test_nan_in_flat_branch_names_the_right_entry(tmp_path):
    src = nan_file(tmp_path, "MET", 13)
    with pytest.raises(InputError) as info:
        build(src, tmp_path / "o.h5", chunk_size=100)
    assert "'MET'" in str(info.value)
    assert "entry 13" in str(info.value)


def test_keep_lets_it_through(tmp_path):
    src = nan_file(tmp_path, "MET", 13)
    out = tmp_path / "o.h5"
    build(src, out, non_finite="keep")
    batch = read_all(out)
    assert np.isnan(batch.event["met"][13])
    assert np.isfinite(np.delete(batch.event["met"], 13)).all()


def test_nan_outside_the_filter_is_not_an_error(tmp_path):
    src = nan_file(tmp_path, "MET", 13)
    out = tmp_path / "o.h5"
    stats = build(src, out, entry_filter=EntryFilter(skip_entry_list=(13,)))
    assert stats.events == N - 1


def test_failed_build_leaves_existing_target_untouched(root_file, tmp_path):
    out = tmp_path / "events.h5"
    build(root_file, out)
    before = out.read_bytes()
    src = nan_file(tmp_path, "MET", 30)
    with pytest.raises(InputError):
        build(src, out, chunk_size=8, config_digest="other")
    assert out.read_bytes() == before
    assert read_root_attrs(out)["config_digest"] == "dg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.h5", "nan_MET.root"]


def test_root_source_reads_entry_lists(root_file):
    with RootSource(root_file, "nominal") as src:
        assert src.num_entries == N
        got = src.read(["MET", "jet_pt"], np.array([2, 5, 6, 30]))
        ref = uproot.open(root_file)["nominal"].arrays(["MET", "jet_pt"])
        np.testing.assert_array_equal(ak.to_numpy(got["MET"]), ak.to_numpy(ref["MET"][[2, 5, 6, 30]]))
        assert ak.to_list(got["jet_pt"]) == ak.to_list(ref["jet_pt"][[2, 5, 6, 30]])
        empty = src.read(["MET"], np.zeros(0, np.int64))
        assert len(empty["MET"]) == 0


def test_infinities_of_both_signs_are_named_and_kept_only_when_asked(tmp_path):
    """+inf and -inf in one branch sum to NaN: the first is still the one named; ``keep`` stores both."""
    data = branches()
    met = data["MET"].copy()
    met[[3, 7]] = [np.inf, -np.inf]
    data["MET"] = met
    src = tmp_path / "inf.root"
    write_root(src, data)
    out = tmp_path / "o.h5"
    with pytest.raises(InputError, match="holds inf .first at entry 3"):
        build(src, out, chunk_size=100)
    build(src, out, chunk_size=100, non_finite="keep")
    assert np.array_equal(read_all(out).event["met"][[3, 7]], [np.inf, -np.inf])


@pytest.mark.parametrize("policy", ["keep", "abs", "zero"])
def test_generator_weight_stored_per_event_and_summed_under_each_policy(tmp_path, root_file, policy):
    """``generator_weight`` evaluates per event (here met - 40: about half negative); the policy
    applies to the stored weights and to their sum alike, with entry filters honoured."""
    out = tmp_path / "events.h5"
    build(root_file, out, generator_weight="met - 40", negative_weights=policy,
          entry_filter=EntryFilter(event_start=3), chunk_size=7)
    raw = branches()["MET"][3:] - 40
    assert (raw < 0).any() and (raw > 0).any()
    expected = {"keep": raw, "abs": np.abs(raw), "zero": np.where(raw < 0, 0, raw)}[policy].astype(np.float32)
    stored = read_all(out).event["generator_weight"]
    np.testing.assert_array_equal(stored, expected)
    with h5py.File(out, "r") as f:
        assert f.attrs["sum_generator_weight"] == pytest.approx(float(expected.sum(dtype=np.float64)), rel=1e-12)
        assert f.attrs["negative_weights"] == policy


def test_without_generator_weight_the_sum_counts_events(tmp_path, root_file):
    out = tmp_path / "events.h5"
    build(root_file, out, entry_filter=EntryFilter(event_start=5))
    assert "generator_weight" not in read_all(out).event
    with h5py.File(out, "r") as f:
        assert f.attrs["sum_generator_weight"] == N - 5


class TruthTemplate(Template):
    """The test template plus truth branches that collision data lacks."""

    leaves = {**Template.leaves, "process": "truth_process"}
    collections = {**Template.collections,
                   "jets": Collection(branches={"pt": "jet_pt", "eta": "jet_eta", "flavour": "jet_truth"})}
    optional = {"truth_process": -1, "jet_truth": -99}


def test_optional_branches_absent_from_a_file_are_filled_with_their_default(tmp_path, root_file):
    """A file without the truth branches (collision data) builds, with the stated defaults in their
    place; a file that has them keeps their values."""
    data = tmp_path / "data.h5"
    build(root_file, data, template=TruthTemplate())
    events = read_all(data)
    assert (events.event["process"] == -1).all() and len(events.event["process"]) == N
    assert (events.tables["jets"].fields["flavour"] == -99).all()
    np.testing.assert_array_equal(events.tables["jets"].counts, ak.num(branches()["jet_pt"]).to_numpy())

    mc_branches = {**branches(), "truth_process": np.arange(N, dtype=np.int32)}
    mc_branches["jet_truth"] = ak.values_astype(ak.ones_like(mc_branches["jet_pt"]) * 5, np.int32)
    mc = tmp_path / "mc.root"
    write_root(mc, mc_branches)
    build(mc, tmp_path / "mc.h5", template=TruthTemplate())
    events = read_all(tmp_path / "mc.h5")
    np.testing.assert_array_equal(events.event["process"], np.arange(N))
    assert (events.tables["jets"].fields["flavour"] == 5).all()


def test_a_missing_required_branch_still_fails_by_name(tmp_path, root_file):
    class Needs(TruthTemplate):
        optional = {"jet_truth": -99}

    with pytest.raises(SourceError, match="truth_process"):
        build(root_file, tmp_path / "x.h5", template=Needs())


@pytest.mark.parametrize("where", ["MET", "trk_pt"])
def test_infinity_fails_like_nan_naming_branch_and_entry(tmp_path, where):
    src = nan_file(tmp_path, where, 12, value=-np.inf)
    with pytest.raises(InputError) as info:
        build(src, tmp_path / "o.h5", chunk_size=5)
    assert f"'{where}'" in str(info.value) and "-inf" in str(info.value)
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("where", ["MET", "trk_pt"])
def test_drop_leaves_out_the_events_with_non_finite_values(tmp_path, where):
    src = nan_file(tmp_path, where, 12, value=np.inf)
    clean = read_all(_build_to(tmp_path, write_root_copy(tmp_path, branches()), "clean"))
    batch = read_all(_build_to(tmp_path, src, "dropped", non_finite="drop", chunk_size=7))
    lost = sorted(set(clean.index["entry"].tolist()) - set(batch.index["entry"].tolist()))
    assert len(lost) == 1 and lost[0] >= 12
    assert np.isfinite(batch.event["met"]).all() and np.isfinite(batch.tables["tracks"].fields["pt"]).all()


def test_fill_replaces_non_finite_values(tmp_path):
    src = nan_file(tmp_path, "MET", 13, value=np.inf)
    batch = read_all(_build_to(tmp_path, src, "filled", non_finite="fill", fill_value=-1.0))
    assert batch.event["met"][13] == -1.0 and len(batch.event["met"]) == N


def write_root_copy(tmp_path, data):
    path = tmp_path / "clean.root"
    write_root(path, data)
    return path


def _build_to(tmp_path, src, name, **kw):
    out = tmp_path / f"{name}.h5"
    build(src, out, **kw)
    return out
