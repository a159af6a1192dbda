"""The scale dict and the umami train file: numerics, layout, NaN handling, precision, compression."""
from __future__ import annotations

import json
import time

import h5py
import numpy as np
import pytest

from tracerflow.io.h5target import SchemaMismatch, read_root_attrs
from tracerflow.write import (
    ScaleAccumulator,
    TrainChunk,
    UmamiFile,
    apply_scaling,
    read_scale_dict,
    read_umami,
    read_umami_names,
    scale_dict_path,
    scale_dict_to_json,
    write_scale_dict_beside,
    write_umami,
)
from tracerflow.write import umami_file
from tracerflow.write.appender import chunk_rows_for

JET_VARS = ["pt", "eta", "mass", "n_trk"]
TRACK_VARS = ["d0", "z0", "pt_frac", "dr"]
TRACK_LABELS = ["origin", "vertex"]
CLASSES = ["ujets", "cjets", "bjets"]
LOG = {"jets": ["pt"], "tracks": ["pt_frac"]}
NO_NORM = {"jets": ["n_trk"]}
N_FOLDS = 4
PADDING_JUNK = 999.0


def synthetic_chunks(n: int = 3000, chunk: int = 700, max_tracks: int = 20, seed: int = 0) -> list[TrainChunk]:
    """Jets with NaNs among jet and track inputs, non-positive values of log variables and junk in padding."""
    rng = np.random.default_rng(seed)
    n_trk = rng.integers(0, max_tracks + 1, n)
    valid = np.arange(max_tracks)[None, :] < n_trk[:, None]
    jets = {
        "pt": rng.lognormal(10.5, 0.8, n),
        "eta": rng.uniform(-2.5, 2.5, n),
        "mass": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(3.0, 4000.0, n)),
        "n_trk": n_trk.astype(np.float64),
    }
    jets["pt"][:5] = [0.0, -1.0, np.nan, np.inf, 1.0]
    tracks = {
        "d0": rng.normal(0, 0.1, (n, max_tracks)),
        "z0": np.where(rng.random((n, max_tracks)) < 0.03, np.nan, rng.normal(0, 0.5, (n, max_tracks))),
        "pt_frac": rng.uniform(-0.05, 1.0, (n, max_tracks)),
        "dr": rng.uniform(0, 0.4, (n, max_tracks)),
    }
    for values in tracks.values():
        values[~valid] = PADDING_JUNK
    track_labels = {
        "origin": np.where(valid, rng.integers(0, 8, (n, max_tracks)), -1),
        "vertex": np.where(valid, rng.integers(-1, 5, (n, max_tracks)), -1),
    }
    label = rng.integers(0, len(CLASSES), n)
    add_labels = {
        "pt_true": np.where(rng.random(n) < 0.1, np.nan, jets["pt"] * rng.normal(1, 0.1, n)),
        "lxy": rng.exponential(2.0, n),
    }
    whole = TrainChunk.from_padded(
        jets=jets,
        tracks=tracks,
        valid=valid,
        track_labels=track_labels,
        label=label,
        weight=rng.uniform(0.5, 2.0, n),
        add_labels=add_labels,
        fold=rng.integers(0, N_FOLDS, n),
        hash=rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1),
    )
    return [whole.take(np.arange(s, min(s + chunk, n))) for s in range(0, n, chunk)]


def concat(chunks: list[TrainChunk]) -> TrainChunk:
    """One chunk holding all jets of ``chunks`` (the expected values are computed on it)."""
    first = chunks[0]

    def cat(get):
        return np.concatenate([get(c) for c in chunks])

    return TrainChunk(
        jets={k: cat(lambda c: c.jets[k]) for k in first.jets},
        counts=cat(lambda c: c.counts),
        tracks={k: cat(lambda c: c.tracks[k]) for k in first.tracks},
        max_tracks=first.max_tracks,
        track_labels={k: cat(lambda c: c.track_labels[k]) for k in first.track_labels},
        label=cat(lambda c: c.label),
        weight=cat(lambda c: c.weight),
        add_labels={k: cat(lambda c: c.add_labels[k]) for k in first.add_labels},
        fold=cat(lambda c: c.fold),
        hash=cat(lambda c: c.hash),
    )


def make_scale_dict(chunks: list[TrainChunk]) -> dict:
    acc = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM)
    for c in chunks:
        acc.update(c)
    return acc.result()


def write(path, chunks, scale_dict, **kw):
    options = dict(
        class_names=CLASSES,
        jet_vars=JET_VARS,
        track_vars=TRACK_VARS,
        track_label_names=TRACK_LABELS,
        scale_dict=scale_dict,
        config_digest="digest-1",
        created_by="WriteTrainSample(split=train)",
    )
    options.update(kw)
    return write_umami(path, chunks, **options)


@pytest.fixture(scope="module")
def chunks():
    return synthetic_chunks()


@pytest.fixture(scope="module")
def whole(chunks):
    return concat(chunks)


@pytest.fixture(scope="module")
def scale_dict(chunks):
    return make_scale_dict(chunks)


@pytest.fixture(scope="module")
def train_path(tmp_path_factory, chunks, scale_dict):
    path = tmp_path_factory.mktemp("train") / "train.h5"
    write(path, chunks, scale_dict)
    return path


# ---------------------------------------------------------------- scale dict


def test_scale_dict_matches_numpy_over_valid_tracks(whole, scale_dict):
    for var in ["eta", "mass"]:
        x = whole.jets[var]
        assert scale_dict["jets"][var]["shift"] == pytest.approx(np.nanmean(x), rel=1e-12, abs=1e-12)
        assert scale_dict["jets"][var]["scale"] == pytest.approx(np.nanstd(x), rel=1e-12)
        assert scale_dict["jets"][var]["log"] is False
    for var in ["d0", "z0", "dr"]:
        x = whole.tracks[var]
        assert scale_dict["tracks"][var]["shift"] == pytest.approx(np.nanmean(x), rel=1e-10, abs=1e-14)
        assert scale_dict["tracks"][var]["scale"] == pytest.approx(np.nanstd(x), rel=1e-10)


def test_log_group_drops_non_positive_and_non_finite(whole, scale_dict):
    pt = whole.jets["pt"]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(pt[np.isfinite(pt) & (pt > 0)])
    expected = {"shift": pytest.approx(logs.mean()), "scale": pytest.approx(logs.std()), "log": True,
                "asinh": False}
    assert scale_dict["jets"]["pt"] == expected
    frac = whole.tracks["pt_frac"]
    assert (frac <= 0).any()
    logf = np.log(frac[frac > 0])
    assert scale_dict["tracks"]["pt_frac"]["shift"] == pytest.approx(logf.mean(), rel=1e-10)
    assert scale_dict["tracks"]["pt_frac"]["scale"] == pytest.approx(logf.std(), rel=1e-10)
    assert scale_dict["tracks"]["pt_frac"]["log"] is True


def test_no_norm_and_degenerate_variables():
    chunk = synthetic_chunks(n=50, chunk=50)[0]
    chunk.jets["eta"] = np.full(50, 3.0)
    chunk.tracks["dr"] = np.full(int(chunk.counts.sum()), np.nan)
    acc = ScaleAccumulator(JET_VARS, TRACK_VARS, no_norm=NO_NORM)
    acc.update(chunk)
    result = acc.result()
    assert result["jets"]["n_trk"] == {"shift": 0.0, "scale": 1.0, "log": False, "asinh": False}
    assert result["jets"]["eta"] == {"shift": 3.0, "scale": 1.0, "log": False, "asinh": False}
    assert result["tracks"]["dr"] == {"shift": 0.0, "scale": 1.0, "log": False, "asinh": False}
    assert acc.counts()["tracks"]["dr"] == 0


def test_asinh_group_scales_signed_tails(whole):
    acc = ScaleAccumulator(JET_VARS, TRACK_VARS, asinh={"tracks": ["d0"]})
    acc.update(whole)
    entry = acc.result()["tracks"]["d0"]
    x = np.arcsinh(whole.tracks["d0"])
    x = x[np.isfinite(x)]
    assert (entry["asinh"], entry["log"]) == (True, False)
    assert entry["shift"] == pytest.approx(x.mean(), rel=1e-10, abs=1e-14)
    assert entry["scale"] == pytest.approx(x.std(), rel=1e-10)
    scaled = apply_scaling(whole, acc.result()).tracks[..., list(TRACK_VARS).index("d0")]
    raw = whole.padded(whole.tracks["d0"], np.nan)
    expected = (np.arcsinh(raw.astype(np.float32)) - np.float32(entry["shift"])) / np.float32(entry["scale"])
    ok = whole.valid & np.isfinite(raw)
    np.testing.assert_allclose(scaled[ok], expected[ok], rtol=1e-5, atol=1e-6)
    assert not scaled[~whole.valid].any()


def test_log_and_asinh_together_is_an_error():
    with pytest.raises(ValueError, match="both log and asinh"):
        ScaleAccumulator(JET_VARS, TRACK_VARS, log={"tracks": ["d0"]}, asinh={"tracks": ["d0"]})


def test_chunking_and_merge_agree(chunks, whole, scale_dict):
    one = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM)
    one.update(whole)
    left = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM)
    right = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM)
    for i, c in enumerate(chunks):
        (left if i % 2 else right).update(c)
    left.merge(right)
    for result in (one.result(), left.result()):
        for group, entries in scale_dict.items():
            for var, entry in entries.items():
                assert result[group][var]["shift"] == pytest.approx(entry["shift"], rel=1e-12, abs=1e-15)
                assert result[group][var]["scale"] == pytest.approx(entry["scale"], rel=1e-12)


def half_tracks(chunk: TrainChunk) -> TrainChunk:
    """``chunk`` with its track inputs stored in float16 (as graph node features are)."""
    out = chunk.take(np.arange(len(chunk)))
    out.tracks = {v: x.astype(np.float16) for v, x in chunk.tracks.items()}
    return out


def test_float16_tracks_give_the_float64_moments_of_their_values(chunks):
    halves = [half_tracks(c) for c in chunks]
    acc = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM, asinh={"tracks": ["d0"]})
    for c in halves:
        acc.update(c)
    result = acc.result()
    whole = concat(halves)
    for var in TRACK_VARS:
        x = whole.tracks[var].astype(np.float64)
        x = np.log(np.where(x > 0, x, np.nan)) if var in LOG["tracks"] else np.arcsinh(x) if var == "d0" else x
        x = x[np.isfinite(x)]
        assert result["tracks"][var]["shift"] == pytest.approx(x.mean(), rel=1e-12, abs=1e-15), var
        assert result["tracks"][var]["scale"] == pytest.approx(x.std(), rel=1e-12), var
        assert acc.counts()["tracks"][var] == x.size
    split = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM, asinh={"tracks": ["d0"]})
    other = ScaleAccumulator(JET_VARS, TRACK_VARS, log=LOG, no_norm=NO_NORM, asinh={"tracks": ["d0"]})
    for i, c in enumerate(halves):
        (split if i % 2 else other).update(c)
    split.merge(other)
    assert split.result()["tracks"] == result["tracks"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float16_tracks_scale_through_tables_as_through_arithmetic(chunks, scale_dict, dtype):
    """The lookup tables give the bits the float32 arithmetic gives, NaN, infinities and log of x <= 0 included."""
    chunk = half_tracks(chunks[2])
    chunk.tracks["dr"][:7] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 300.0, -1e-7]
    chunk.tracks["pt_frac"][:3] = [0.0, -0.01, np.nan]
    entries = dict(scale_dict["tracks"], d0={**scale_dict["tracks"]["d0"], "asinh": True})
    sd = {"jets": scale_dict["jets"], "tracks": entries}
    tables = apply_scaling(chunk, sd, JET_VARS, TRACK_VARS, dtype=dtype).tracks
    widened = chunk.take(np.arange(len(chunk)))
    widened.tracks = {v: x.astype(np.float32) for v, x in chunk.tracks.items()}
    arithmetic = apply_scaling(widened, sd, JET_VARS, TRACK_VARS, dtype=dtype).tracks
    assert tables.dtype == arithmetic.dtype == dtype
    np.testing.assert_array_equal(tables.view(np.uint8), arithmetic.view(np.uint8))
    assert np.isfinite(tables).all() and not tables[~chunk.valid].any()


def test_large_offset_stays_accurate():
    rng = np.random.default_rng(3)
    x = 1e9 + rng.normal(0, 1, 200_000)
    acc = ScaleAccumulator(["x"], [])
    for part in np.array_split(x, 7):
        acc.update(TrainChunk({"x": part}, np.zeros(len(part), int), {}, 0, np.zeros(len(part), int),
                              np.ones(len(part)), np.zeros(len(part), int), np.zeros(len(part), np.uint64)))
    entry = acc.result()["jets"]["x"]
    assert entry["shift"] == pytest.approx(x.mean(), rel=1e-15)
    assert entry["scale"] == pytest.approx(x.std(), rel=1e-9)


def test_unknown_group_variable_is_an_error():
    with pytest.raises(ValueError, match="not inputs"):
        ScaleAccumulator(JET_VARS, TRACK_VARS, log=["nope"])


def test_apply_scaling_nan_padding_and_log(chunks, scale_dict):
    chunk = chunks[0]
    scaled = apply_scaling(chunk, scale_dict, JET_VARS, TRACK_VARS)
    assert scaled.jets.dtype == np.float32 and scaled.tracks.shape == chunk.valid.shape + (len(TRACK_VARS),)
    assert np.isfinite(scaled.jets).all() and np.isfinite(scaled.tracks).all()
    assert (scaled.tracks[~chunk.valid] == 0).all()
    pt = scale_dict["jets"]["pt"]
    assert (scaled.jets[:4, 0] == 0).all()  # pt 0, -1, NaN and inf have no logarithm
    assert scaled.jets[4, 0] == pytest.approx((0.0 - pt["shift"]) / pt["scale"], rel=1e-6)
    nan_mass = np.isnan(chunk.jets["mass"])
    assert nan_mass.any() and (scaled.jets[nan_mass, 2] == 0).all()
    np.testing.assert_array_equal(scaled.jets[:, 3], chunk.jets["n_trk"].astype(np.float32))
    z0 = scale_dict["tracks"]["z0"]
    raw = chunk.padded(chunk.tracks["z0"], np.nan)
    ok = chunk.valid & np.isfinite(raw)
    expected = (raw[ok].astype(np.float32) - np.float32(z0["shift"])) / np.float32(z0["scale"])
    np.testing.assert_allclose(scaled.tracks[..., 1][ok], expected, rtol=1e-6)
    assert (scaled.tracks[..., 1][chunk.valid & ~np.isfinite(raw)] == 0).all()


def test_half_precision_scaling_is_the_cast_of_float32(chunks, scale_dict):
    full = apply_scaling(chunks[1], scale_dict, JET_VARS, TRACK_VARS)
    half = apply_scaling(chunks[1], scale_dict, JET_VARS, TRACK_VARS, dtype=np.float16)
    assert half.tracks.dtype == np.float16
    np.testing.assert_array_equal(half.jets, full.jets.astype(np.float16))
    np.testing.assert_array_equal(half.tracks, full.tracks.astype(np.float16))


def test_missing_scale_entry_names_the_variable(chunks, scale_dict):
    with pytest.raises(KeyError, match="scale dict has no entry for tracks variable 'nope'"):
        apply_scaling(chunks[0], scale_dict, JET_VARS, ["nope"])
    with pytest.raises(KeyError, match="chunk has no jets variable 'pt'"):
        apply_scaling(_without(chunks[0], "pt"), scale_dict, JET_VARS, TRACK_VARS)


def _without(chunk: TrainChunk, jet_var: str) -> TrainChunk:
    out = chunk.take(np.arange(len(chunk)))
    del out.jets[jet_var]
    return out


def test_scale_dict_json_is_canonical(tmp_path, scale_dict):
    text = scale_dict_to_json(scale_dict)
    assert text == scale_dict_to_json(json.loads(text))
    keys = list(json.loads(text)["jets"])
    assert keys == sorted(keys)
    path = write_scale_dict_beside(tmp_path / "train.h5", scale_dict)
    assert path == scale_dict_path(tmp_path / "train.h5") == tmp_path / "train.scale_dict.json"
    assert read_scale_dict(path) == scale_dict


# ---------------------------------------------------------------- train file


def test_layout_and_attributes(train_path, whole):
    n, max_tracks = len(whole), whole.max_tracks
    with h5py.File(train_path, "r") as f:
        assert f["jets/inputs"].shape == (n, len(JET_VARS)) and f["jets/inputs"].dtype == np.float16
        assert f["jets/labels"].shape == (n,)
        assert f["jets/labels_one_hot"].shape == (n, len(CLASSES)) and f["jets/labels_one_hot"].dtype == np.uint8
        assert f["jets/weight"].dtype == np.float32
        assert f["jets/fold"].dtype == np.int16 and f["jets/hash"].dtype == np.uint64
        assert sorted(f["jets/add_labels"]) == ["lxy", "pt_true"]
        assert f["tracks/inputs"].shape == (n, max_tracks, len(TRACK_VARS))
        assert f["tracks/valid"].dtype == bool
        assert f["tracks/labels"].shape == (n, max_tracks, len(TRACK_LABELS)) and f["tracks/labels"].dtype == np.int8
        assert json.loads(f["jets/inputs"].attrs["variables"]) == JET_VARS
        assert json.loads(f["tracks/inputs"].attrs["variables"]) == TRACK_VARS
        assert json.loads(f["tracks/labels"].attrs["variables"]) == TRACK_LABELS
        assert json.loads(f["jets/labels_one_hot"].attrs["label_classes"]) == CLASSES
        row_bytes = max_tracks * len(TRACK_VARS) * 2
        assert f["tracks/inputs"].chunks == (chunk_rows_for(row_bytes), max_tracks, len(TRACK_VARS))
        assert f["jets/weight"].chunks == (32768,)
    attrs = read_root_attrs(train_path)
    assert attrs["schema"] == umami_file.SCHEMA and attrs["schema_version"] == 1
    assert attrs["complete"] is True and attrs["config_digest"] == "digest-1"
    assert attrs["n_jets"] == n
    assert json.loads(attrs["class_names"]) == CLASSES
    assert read_umami_names(train_path) == {
        "jet_variables": JET_VARS,
        "track_variables": TRACK_VARS,
        "track_label_names": TRACK_LABELS,
        "add_label_names": ["pt_true", "lxy"],
        "class_names": CLASSES,
    }


def test_read_back_equals_scaled_inputs(train_path, whole, scale_dict):
    data = read_umami(train_path)
    scaled = apply_scaling(whole, scale_dict, JET_VARS, TRACK_VARS)
    np.testing.assert_array_equal(data["jets/inputs"], scaled.jets.astype(np.float16))
    np.testing.assert_array_equal(data["tracks/inputs"], scaled.tracks.astype(np.float16))
    np.testing.assert_array_equal(data["tracks/valid"], whole.valid)
    assert (data["tracks/inputs"][~whole.valid] == 0).all()
    assert np.isfinite(data["tracks/inputs"]).all() and np.isfinite(data["jets/inputs"]).all()
    np.testing.assert_array_equal(data["jets/labels"], whole.label)
    np.testing.assert_array_equal(data["jets/labels_one_hot"], np.eye(len(CLASSES), dtype=np.uint8)[whole.label])
    assert (data["jets/labels_one_hot"].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(data["jets/weight"], whole.weight.astype(np.float32))
    np.testing.assert_array_equal(data["jets/fold"], whole.fold)
    np.testing.assert_array_equal(data["jets/hash"], whole.hash)
    for i, name in enumerate(TRACK_LABELS):
        np.testing.assert_array_equal(data["tracks/labels"][..., i], whole.padded(whole.track_labels[name], -1))
    assert (data["tracks/labels"][~whole.valid] == -1).all()


def test_add_labels_nan_to_zero_unscaled(train_path, whole):
    data = read_umami(train_path)
    raw = whole.add_labels["pt_true"]
    got = data["jets/add_labels/pt_true"]
    assert got.dtype == np.float32 and np.isnan(raw).any()
    assert (got[np.isnan(raw)] == 0).all()
    np.testing.assert_array_equal(got[~np.isnan(raw)], raw[~np.isnan(raw)].astype(np.float32))
    np.testing.assert_array_equal(data["jets/add_labels/lxy"], whole.add_labels["lxy"].astype(np.float32))


def test_partial_read(train_path):
    full = read_umami(train_path)
    part = read_umami(train_path, 1234, 2345)
    assert set(part) == set(full)
    for key in full:
        np.testing.assert_array_equal(part[key], full[key][1234:2345])


def test_scale_dict_inside_equals_json_beside(tmp_path, chunks, scale_dict):
    path = tmp_path / "train.h5"
    write(path, chunks, scale_dict)
    beside = write_scale_dict_beside(path, scale_dict)
    with UmamiFile(path) as f:
        assert f.scale_dict == read_scale_dict(beside) == json.loads(json.dumps(scale_dict))
    with h5py.File(path, "r") as f:
        assert f["scale_dict"][()].decode() == beside.read_text()


@pytest.mark.parametrize("concat", [True, ["pt", "eta"]])
def test_concat_jet_tracks(tmp_path, chunks, whole, scale_dict, concat):
    path = tmp_path / "train.h5"
    write(path, chunks, scale_dict, concat_jet_tracks=concat)
    names = JET_VARS if concat is True else concat
    data = read_umami(path)
    scaled = apply_scaling(whole, scale_dict, JET_VARS, TRACK_VARS)
    trk = data["tracks/inputs"]
    assert trk.shape[2] == len(TRACK_VARS) + len(names)
    np.testing.assert_array_equal(trk[..., : len(TRACK_VARS)], scaled.tracks.astype(np.float16))
    for i, var in enumerate(names):
        col = trk[..., len(TRACK_VARS) + i]
        expected = np.broadcast_to(scaled.jets[:, JET_VARS.index(var), None], col.shape).astype(np.float16)
        np.testing.assert_array_equal(col[whole.valid], expected[whole.valid])
        assert (col[~whole.valid] == 0).all()
    assert read_umami_names(path)["track_variables"] == TRACK_VARS + [f"jet_{v}" for v in names]


def test_concat_unknown_variable(tmp_path, chunks, scale_dict):
    with pytest.raises(ValueError, match="not jet inputs"):
        write(tmp_path / "x.h5", chunks, scale_dict, concat_jet_tracks=["d0"])
    assert not (tmp_path / "x.h5").exists()


def test_float32_precision(tmp_path, chunks, whole, scale_dict):
    path = tmp_path / "train.h5"
    write(path, chunks, scale_dict, precision="float32")
    data = read_umami(path)
    scaled = apply_scaling(whole, scale_dict, JET_VARS, TRACK_VARS)
    assert data["jets/inputs"].dtype == np.float32 and data["tracks/inputs"].dtype == np.float32
    np.testing.assert_array_equal(data["jets/inputs"], scaled.jets)
    np.testing.assert_array_equal(data["tracks/inputs"], scaled.tracks)
    assert data["jets/add_labels/lxy"].dtype == np.float32


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_compressions_open_with_plain_h5py(tmp_path, chunks, train_path, compression):
    path = tmp_path / f"train_{compression}.h5"
    write(path, chunks, make_scale_dict(chunks), compression=compression)
    with h5py.File(path, "r") as f, h5py.File(train_path, "r") as ref:
        assert f["tracks/inputs"].compression == compression
        for name in ["jets/inputs", "tracks/inputs", "tracks/labels", "jets/hash", "jets/add_labels/pt_true"]:
            np.testing.assert_array_equal(f[name][:], ref[name][:])


def test_chunking_of_input_does_not_matter(tmp_path, chunks, whole, scale_dict, train_path):
    path = tmp_path / "one_chunk.h5"
    write(path, [whole], scale_dict)
    a, b = read_umami(path), read_umami(train_path)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def _same_content(a, b) -> None:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        assert names_a == names_b
        for name in names_a:
            assert dict(fa[name].attrs) == dict(fb[name].attrs)
            if isinstance(fa[name], h5py.Dataset):
                assert fa[name].chunks == fb[name].chunks
                np.testing.assert_array_equal(fa[name][()], fb[name][()])
        assert {k: v for k, v in fa.attrs.items()} == {k: v for k, v in fb.attrs.items()}


def test_identical_inputs_give_identical_files(tmp_path, chunks, scale_dict):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write(a, chunks, scale_dict, compression="gzip")
    time.sleep(1.1)  # a second apart: no timestamp may differ
    write(b, chunks, scale_dict, compression="gzip")
    _same_content(a, b)
    assert a.read_bytes() == b.read_bytes()


def test_empty_input_gives_empty_datasets(tmp_path, scale_dict):
    path = tmp_path / "empty.h5"
    assert write(path, [], scale_dict, max_tracks=7, add_label_names=["lxy"]) == 0
    data = read_umami(path)
    assert data["tracks/inputs"].shape == (0, 7, len(TRACK_VARS))
    assert data["jets/add_labels/lxy"].shape == (0,)


def test_bad_labels_and_schema(tmp_path, chunks, scale_dict, train_path):
    bad = chunks[0].take(np.arange(10))
    bad.label = bad.label.copy()
    bad.label[0] = len(CLASSES)
    with pytest.raises(ValueError, match="labels must lie"):
        write(tmp_path / "bad.h5", [bad], scale_dict)
    with pytest.raises(ValueError, match="precision"):
        write(tmp_path / "bad.h5", chunks, scale_dict, precision="float64")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["schema"] = "something.else"
    with pytest.raises(SchemaMismatch):
        UmamiFile(tmp_path / "other.h5")


@pytest.mark.parametrize("expected", [None, 3000])
def test_own_group_names_read_by_umamis_names(tmp_path, chunks, scale_dict, train_path, expected):
    """A file whose groups are named otherwise (event-level rows with their jets as the set) holds
    the same bytes under the new names, and every reader finds them by umami's names."""
    from tracerflow.training.data import TrainFileDataset

    path = tmp_path / "events.h5"
    write(path, chunks, scale_dict, groups={"jets": "events", "tracks": "jets"}, expected_jets=expected)
    with h5py.File(path) as renamed, h5py.File(train_path) as plain:
        assert set(renamed) == {"events", "jets", "scale_dict"}
        np.testing.assert_array_equal(renamed["events/inputs"][:], plain["jets/inputs"][:])
        np.testing.assert_array_equal(renamed["jets/valid"][:], plain["tracks/valid"][:])
    ours, umami = umami_file.read_umami(path), umami_file.read_umami(train_path)
    assert sorted(ours) == sorted(umami)
    for name in umami:
        np.testing.assert_array_equal(ours[name], umami[name])
    batches = [list(TrainFileDataset(p, [0, 1], batch_size=512, shuffle=True, seed=3)) for p in (path, train_path)]
    for a, b in zip(*batches):
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


@pytest.mark.parametrize("groups, says", [({"jets": "x", "tracks": "x"}, "share a name"),
                                          ({"jets": "a/b"}, "plain group name"), ({"events": "e"}, "not one of")])
def test_bad_group_names_are_refused(tmp_path, chunks, scale_dict, groups, says):
    with pytest.raises(ValueError, match=says):
        write(tmp_path / "x.h5", chunks, scale_dict, groups=groups)
