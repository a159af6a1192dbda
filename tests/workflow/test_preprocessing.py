"""Resample -> WriteTrainSample -> ConvertTFRecords end to end through the tracerflow command.

One module-scoped run of the embedded default on the SMALL sample serves every test that only
reads its outputs; tests that break or change files work on a copy. That run uses small write
and TFRecord chunks, so the train files are gathered through several buckets and the train
split's TFRecords span several shards. The statistics test has its own larger run (~30k jets,
up to Resample).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from scipy import stats

from tracerflow.config import default_config_path, load_config
from tracerflow.hashing import fold_of
from tracerflow.io.resampled_file import INDEX_COLUMNS
from tracerflow.resample import resample, spec_from_config
from tracerflow.resample.inputs import selection_chunks
from tracerflow.resample.classes import SPEC_KEYS
from tracerflow.tfrecords import load_metadata, read_tfrecords
from tracerflow.workflows import cli
from tracerflow.write import FoldYielder, read_scale_dict

from .helpers import SMALL, config_error, datasets, file_mtimes, output_root, tracerflow

PRE = (*SMALL, "--set", "write.chunk_size=1000", "--set", "tfrecords.chunk_size=1000",
       "--set", "resample.chunk_size=700")
CFG = load_config(None, PRE[1::2])
SEED = CFG.seed
CONVERTED = tuple(CFG["tfrecords"]["splits"])            # what `tracerflow run` must at least produce
UNCONVERTED = tuple(s for s in CFG["resample"]["splits"] if s not in CONVERTED)
CLASSES = list(CFG["resample"]["classes"])
JET_VARS = list(CFG["write"]["jets"]["variables"])
TRACK_VARS = list(CFG["graph"]["template"]["node_features"])
TRACK_LABELS = list(CFG["write"]["tracks"]["labels"])
ADD_LABELS = list(CFG["write"]["add_labels"])
MAX_TRACKS = CFG["write"]["tracks"]["max_tracks"]
N_FOLDS = CFG["write"]["n_folds"]
NEW_STAGE_DIRS = ("resample", "train_sample", "tfrecords")
HEX16 = re.compile(r"[0-9a-f]{16}")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
H5_TARGETS = {  # path pattern -> (task family, schema)
    "resample/{split}.h5": ("Resample", "tracerflow.resampled"),
    "train_sample/{split}.h5": ("WriteTrainSample", "tracerflow.train_umami"),
    "train_sample/{split}_folds.h5": ("WriteTrainSample", "tracerflow.train_folds"),
}
TF_SOURCES = {  # TFRecord feature -> train-file dataset
    "X_jets": "jets/inputs",
    "X_trk": "tracks/inputs",
    "valid": "tracks/valid",
    "Y": "jets/labels_one_hot",
    "weight": "jets/weight",
    "hash": "jets/hash",
    "fold": "jets/fold",
}
STATS = ("--set", "samples.ttbar.generate.n_jets=18000", "--set", "samples.zprime.generate.n_jets=12000",
         "--set", "samples.ttbar.generate.events_per_file=3000",
         "--set", "samples.zprime.generate.events_per_file=4000", "--set", "resample.plots=false")

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The directory of one full `tracerflow run` (no --until) of PRE; tests must not change it."""
    work = tmp_path_factory.mktemp("preprocessing")
    tracerflow("run", *PRE, cwd=work, check=True)
    return work


@pytest.fixture(scope="module")
def root(work) -> Path:
    return output_root(work)


def _copy_run(work: Path, to: Path) -> Path:
    """A copy of the module run's outputs in ``to`` (mtimes kept); returns its output root."""
    shutil.copytree(work / "tracerflow-output", to / "tracerflow-output")
    return output_root(to)


def _attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return dict(f.attrs)


def _json_attr(path: Path, name: str) -> list:
    return json.loads(_attrs(path)[name])


def _selected(root: Path, split: str, names: list[str]) -> dict[str, np.ndarray]:
    """The selection outputs ``names``, track count and graphs-file row of every row of resample/<split>.h5.

    Looked up by the row's (source, row) in the selections file, and through the selection's
    events row in the graphs file, independently of WriteTrainSample's gathering code.
    """
    rows = datasets(root / "resample" / f"{split}.h5")
    sources = _json_attr(root / "resample" / f"{split}.h5", "sources")
    n = len(rows["index/row"])
    out = {name: np.full(n, np.nan) for name in names}
    out["ntracks"] = np.full(n, -1, np.int64)
    out["graph"] = np.full(n, -1, np.int64)
    for s, (sample, file) in enumerate(sources):
        mine = rows["index/source"] == s
        stem = Path(file).stem
        sel = datasets(root / "selections" / sample / f"{stem}.h5")
        graphs = datasets(root / "graphs" / sample / f"{stem}.h5")
        at = rows["index/row"][mine]
        assert np.array_equal(sel["index/hash"][at], rows["index/hash"][mine])
        assert np.array_equal(sel["index/item"][at], rows["index/item"][mine])
        for name in names:
            out[name][mine] = sel[f"derived/{name}"][at]
        events_row = sel["index/row"][at]
        order = np.argsort(graphs["index/row"], kind="stable")
        graph = order[np.searchsorted(graphs["index/row"], events_row, sorter=order)]
        assert np.array_equal(graphs["index/row"][graph], events_row)
        out["ntracks"][mine] = graphs["nodes/counts"][graph]
        out["graph"][mine] = graph
    assert (out["ntracks"] >= 0).all()
    return out


def _nan_to_zero(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float32)
    return np.where(np.isnan(values), np.float32(0), values)


# 1. the whole DAG --------------------------------------------------------------------------


@pytest.mark.slow
def test_whole_dag_writes_every_target_and_a_rerun_does_nothing(work, root):
    for split in CONVERTED:
        digests = {}
        for pattern, (family, schema) in H5_TARGETS.items():
            path = root / pattern.format(split=split)
            attrs = _attrs(path)
            assert attrs["complete"], path
            assert attrs["schema"] == schema and attrs["split"] == split, path
            assert HEX16.fullmatch(attrs["config_digest"]), path
            assert attrs["created_by"].startswith(f"{family}(") and f"split={split}" in attrs["created_by"], path
            digests[pattern] = attrs["config_digest"]
        assert digests["train_sample/{split}.h5"] == digests["train_sample/{split}_folds.h5"]
        n_rows = _attrs(root / "resample" / f"{split}.h5")["n_rows"]
        train = root / "train_sample" / f"{split}.h5"
        assert _attrs(train)["n_jets"] == n_rows > 0

        shard_dir = root / "tfrecords" / split
        meta = json.loads((shard_dir / "metadata.json").read_text())
        assert HEX16.fullmatch(meta["config_digest"]) and meta["created_by"].startswith("ConvertTFRecords(")
        assert sorted(p.name for p in shard_dir.glob("shard_*.tfrecord")) == [s["file"] for s in meta["shards"]]
        sizes = [s["n_jets"] for s in meta["shards"]]
        assert sum(sizes) == meta["n_jets"] == n_rows
        assert all(size == CFG["tfrecords"]["chunk_size"] for size in sizes[:-1]) and 0 < sizes[-1]
        assert meta["source"]["digest"] == "sha256:" + hashlib.sha256(train.read_bytes()).hexdigest()
        assert meta["source"]["config_digest"] == digests["train_sample/{split}.h5"]

        report = json.loads((root / "resample" / f"report_{split}.json").read_text())
        assert list(report["splits"]) == [split] and report["splits"][split]["rows"] == n_rows
        for variable in CFG["resample"]["variables"]:
            assert (root / "resample" / "plots" / f"resample_{split}_{variable}.png").read_bytes()[:8] == PNG_MAGIC
    assert len(list((root / "tfrecords" / "train").glob("shard_*.tfrecord"))) > 1
    scale = read_scale_dict(root / "train_sample" / "scale_dict.json")
    assert set(scale["jets"]) == set(JET_VARS) and set(scale["tracks"]) == set(TRACK_VARS)
    assert UNCONVERTED == ("test",)  # the default's untouched split, written but not converted

    shown = tracerflow("show", *PRE, cwd=work, check=True).stdout
    done, total = shown.strip().splitlines()[-1].split()[0].split("/")
    assert done == total
    assert "pending" not in shown
    listed = set(re.findall(r"\[done\] (\w+\(split=\w+\))", shown))
    assert {f"{family}(split={split})" for family in ("Resample", "WriteTrainSample", "ConvertTFRecords")
            for split in CONVERTED} <= listed

    before = file_mtimes(root)
    tracerflow("run", *PRE, cwd=work, check=True)
    assert file_mtimes(root) == before


@pytest.mark.slow
def test_run_without_until_also_writes_the_splits_that_are_not_converted(root):
    for split in UNCONVERTED:
        assert (root / "resample" / f"report_{split}.json").is_file()
        for pattern in H5_TARGETS:
            path = root / pattern.format(split=split)
            assert path.is_file() and _attrs(path)["complete"], path


# 2. round trips ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("split", CONVERTED)
def test_train_file_reads_back_with_plain_h5py(root, split):
    path = root / "train_sample" / f"{split}.h5"
    arrays = datasets(path)
    n = len(arrays["jets/labels"])
    expected = {
        "jets/inputs": ((n, len(JET_VARS)), np.float16),
        "jets/labels": ((n,), np.int64),
        "jets/labels_one_hot": ((n, len(CLASSES)), np.uint8),
        "jets/weight": ((n,), np.float32),
        "jets/fold": ((n,), np.int16),
        "jets/hash": ((n,), np.uint64),
        "jets/source": ((n,), np.uint32),
        "jets/entry": ((n,), np.int64),
        "jets/item": ((n,), np.int32),
        **{f"jets/add_labels/{name}": ((n,), np.float32) for name in ADD_LABELS},
        "tracks/inputs": ((n, MAX_TRACKS, len(TRACK_VARS)), np.float16),
        "tracks/valid": ((n, MAX_TRACKS), bool),
        "tracks/labels": ((n, MAX_TRACKS, len(TRACK_LABELS)), np.int8),
    }
    assert set(arrays) == set(expected) | {"scale_dict"}
    for name, (shape, dtype) in expected.items():
        assert arrays[name].shape == shape and arrays[name].dtype == dtype, name
    assert _json_attr(path, "jet_variables") == JET_VARS
    assert _json_attr(path, "track_variables") == TRACK_VARS
    assert _json_attr(path, "track_label_names") == TRACK_LABELS
    assert _json_attr(path, "add_label_names") == ADD_LABELS
    assert _json_attr(path, "class_names") == CLASSES
    with h5py.File(path, "r") as f:
        assert json.loads(f["jets/inputs"].attrs["variables"]) == JET_VARS
        assert json.loads(f["tracks/inputs"].attrs["variables"]) == TRACK_VARS

    labels = arrays["jets/labels"]
    assert set(np.unique(labels)) == set(range(len(CLASSES)))
    assert np.array_equal(arrays["jets/labels_one_hot"], np.eye(len(CLASSES), dtype=np.uint8)[labels])

    valid = arrays["tracks/valid"]
    count = valid.sum(axis=1)
    assert (count >= 1).all()                                        # the has_tracks cut
    assert np.array_equal(valid, np.arange(MAX_TRACKS) < count[:, None])  # real tracks first, then padding
    assert not arrays["tracks/inputs"][~valid].any()
    assert (arrays["tracks/labels"][~valid] == -1).all() and (arrays["tracks/labels"][valid] >= 0).all()
    assert np.isfinite(arrays["tracks/inputs"][valid]).all() and np.isfinite(arrays["jets/inputs"]).all()
    assert json.loads(arrays["scale_dict"]) == read_scale_dict(root / "train_sample" / "scale_dict.json")


@pytest.mark.slow
@pytest.mark.parametrize("split", CONVERTED)
def test_train_file_holds_the_resampled_rows_in_their_order(root, split):
    """Row i of the train file is row i of resample/<split>.h5: same event hash, label and weight,
    and the jet variables, add_labels and track count of the jet that row points at."""
    rows = datasets(root / "resample" / f"{split}.h5")
    train = datasets(root / "train_sample" / f"{split}.h5")
    assert np.array_equal(train["jets/hash"], rows["index/hash"])
    assert np.array_equal(train["jets/labels"], rows["label"])
    assert np.array_equal(train["jets/weight"], rows["weight"])
    assert np.array_equal(train["jets/fold"], fold_of(rows["index/hash"], N_FOLDS, SEED))
    assert set(np.unique(train["jets/fold"])) == set(range(N_FOLDS))

    values = _selected(root, split, [*JET_VARS, *ADD_LABELS])
    assert np.array_equal(train["tracks/valid"].sum(axis=1), np.minimum(values["ntracks"], MAX_TRACKS))
    for name in ADD_LABELS:
        assert np.array_equal(train[f"jets/add_labels/{name}"], _nan_to_zero(values[name])), name
    scale = read_scale_dict(root / "train_sample" / "scale_dict.json")["jets"]
    for i, name in enumerate(JET_VARS):
        x = np.log(values[name]) if scale[name]["log"] else values[name]
        expected = (x - scale[name]["shift"]) / scale[name]["scale"]
        np.testing.assert_allclose(train["jets/inputs"][:, i].astype(np.float64), expected, rtol=2e-3, atol=2e-3,
                                   err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("split", CONVERTED)
def test_resampled_file_carries_each_rows_selection_outputs_and_graph_nodes(root, split):
    """Row i of resample/<split>.h5 holds the selection outputs of the jet it points at and, back to
    back with the other rows', that jet's graph nodes: features and truth, as in the graphs file."""
    path = root / "resample" / f"{split}.h5"
    data = datasets(path)
    names = sorted(name.split("/", 1)[1] for name in data if name.startswith("jets/"))
    assert {*JET_VARS, *ADD_LABELS} <= set(names)
    values = _selected(root, split, names)
    for name in names:
        np.testing.assert_array_equal(data[f"jets/{name}"], values[name], err_msg=name)
    assert np.array_equal(data["nodes/counts"], values["ntracks"])
    offsets = np.concatenate([[0], np.cumsum(data["nodes/counts"].astype(np.int64))])
    rows = data["index/source"]
    for s, (sample, file) in enumerate(_json_attr(path, "sources")):
        graphs = datasets(root / "graphs" / sample / f"{Path(file).stem}.h5")
        node_start = np.concatenate([[0], np.cumsum(graphs["nodes/counts"].astype(np.int64))])
        for i in np.flatnonzero(rows == s)[:200]:
            g, n = values["graph"][i], values["ntracks"][i]
            ours = slice(offsets[i], offsets[i] + n)
            theirs = slice(node_start[g], node_start[g] + n)
            assert np.array_equal(data["nodes/x"][ours], graphs["nodes/x"][theirs]), (s, i)
            assert np.array_equal(data["nodes/truth"][ours], graphs["truth/nodes"][theirs]), (s, i)
        with h5py.File(path) as ours, h5py.File(root / "graphs" / sample / f"{Path(file).stem}.h5") as theirs:
            assert ours["nodes/x"].attrs["names"] == theirs["nodes/x"].attrs["names"]
            assert ours["nodes/truth"].attrs["names"] == theirs["truth/nodes"].attrs["names"]


@pytest.mark.slow
def test_scale_dict_comes_from_the_train_split(root):
    scale = read_scale_dict(root / "train_sample" / "scale_dict.json")
    values = _selected(root, "train", JET_VARS)
    for name in JET_VARS:
        entry = scale["jets"][name]
        assert entry["log"] == (name in CFG["write"]["jets"]["log"])
        x = np.log(values[name]) if entry["log"] else values[name]
        assert entry["shift"] == pytest.approx(x.mean(), rel=1e-9, abs=1e-12), name
        assert entry["scale"] == pytest.approx(x.std(), rel=1e-9), name
    for name in TRACK_VARS:
        entry = scale["tracks"][name]
        if name in CFG["write"]["tracks"]["no_norm"]:
            assert (entry["shift"], entry["scale"]) == (0.0, 1.0), name
        else:
            assert entry["scale"] > 0 and entry["scale"] != 1.0, name
    for split in CONVERTED:
        with h5py.File(root / "train_sample" / f"{split}_folds.h5", "r") as f:
            assert json.loads(f["meta_data/scale_dict"][()]) == scale


@pytest.mark.slow
@pytest.mark.parametrize("split", CONVERTED)
def test_tfrecords_read_back_through_tf_data_equal_to_the_train_file(root, split, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    import tensorflow as tf

    train = datasets(root / "train_sample" / f"{split}.h5")
    shard_dir = root / "tfrecords" / split
    meta = load_metadata(shard_dir)
    n_add = CFG["tfrecords"]["n_add_vars"]
    assert meta["add_variables"] == JET_VARS[:n_add] and meta["class_names"] == CLASSES
    records = read_tfrecords(shard_dir)
    assert set(records) == set(TF_SOURCES) | {"X_add_vars"}
    for key, source in TF_SOURCES.items():
        assert records[key].dtype == train[source].dtype and records[key].shape == train[source].shape, key
        assert records[key].tobytes() == train[source].tobytes(), key
    assert records["X_add_vars"].tobytes() == np.ascontiguousarray(train["jets/inputs"][:, :n_add]).tobytes()

    # the same with tf.data alone, shards in file-name order, without tracerflow's reader
    spec = {key: tf.io.FixedLenFeature([], tf.string) for key in ("hash", "X_jets", "X_trk")}
    parts: dict[str, list[np.ndarray]] = {key: [] for key in spec}
    shards = sorted(str(p) for p in shard_dir.glob("shard_*.tfrecord"))
    for batch in tf.data.TFRecordDataset(shards).batch(2048):
        parsed = tf.io.parse_example(batch, spec)
        parts["hash"].append(tf.io.decode_raw(parsed["hash"], tf.int64).numpy().view(np.uint64).ravel())
        parts["X_jets"].append(tf.io.decode_raw(parsed["X_jets"], tf.float16).numpy())
        parts["X_trk"].append(tf.io.decode_raw(parsed["X_trk"], tf.float16).numpy())
    assert np.array_equal(np.concatenate(parts["hash"]), train["jets/hash"])
    assert np.concatenate(parts["X_jets"]).tobytes() == train["jets/inputs"].tobytes()
    assert np.concatenate(parts["X_trk"]).tobytes() == train["tracks/inputs"].tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("split", CONVERTED)
def test_fold_file_reads_back_through_fold_yielder(root, split):
    """Fold i holds the train file's jets with jets/fold == i, in the train file's order."""
    train = datasets(root / "train_sample" / f"{split}.h5")
    path = root / "train_sample" / f"{split}_folds.h5"
    sizes = []
    with FoldYielder(path) as folds:
        assert len(folds) == N_FOLDS
        assert folds.cont_feats == JET_VARS and folds.cat_feats == [] and folds.matrix_feats == TRACK_VARS
        assert folds.targ_feats == ["label", *ADD_LABELS] and folds.wgt_feat == "weight"
        for i, fold in enumerate(folds):
            mine = train["jets/fold"] == i
            assert mine.any(), i
            assert np.array_equal(fold["hash"], train["jets/hash"][mine]), i
            assert np.array_equal(fold["inputs"].astype(np.float16), train["jets/inputs"][mine]), i
            assert np.array_equal(fold["weights"], train["jets/weight"][mine]), i
            assert np.array_equal(fold["targets"][:, 0], train["jets/labels"][mine]), i
            for j, name in enumerate(ADD_LABELS, start=1):
                assert np.array_equal(_nan_to_zero(fold["targets"][:, j]), train[f"jets/add_labels/{name}"][mine])
            valid = train["tracks/valid"][mine]
            assert np.array_equal(fold["matrix_valid"], valid), i
            assert np.isnan(fold["matrix_inputs"][~valid]).all(), i
            assert np.array_equal(fold["matrix_inputs"][valid].astype(np.float16), train["tracks/inputs"][mine][valid])
            sizes.append(len(fold["hash"]))
        assert sum(sizes) == len(train["jets/hash"])
        assert _json_attr(path, "fold_sizes") == sizes
    with FoldYielder(path, ignore_feats=[JET_VARS[-1]]) as folds:
        first = train["jets/fold"] == 0
        assert np.array_equal(folds.get_fold(0)["inputs"].astype(np.float16), train["jets/inputs"][first][:, :-1])


# 3. reproducibility ------------------------------------------------------------------------


def _stage_files(base: Path) -> list[Path]:
    """Every file below resample/, train_sample/ and tfrecords/ of an output root, relative to it."""
    return sorted(p.relative_to(base) for d in NEW_STAGE_DIRS for p in (base / d).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def parallel_root(tmp_path_factory) -> Path:
    """The output root of a second run of PRE with two workers."""
    work = tmp_path_factory.mktemp("parallel")
    tracerflow("run", *PRE, "--workers", "2", cwd=work, check=True)
    return output_root(work)


@pytest.mark.slow
def test_two_runs_give_byte_identical_files(root, tmp_path):
    """Every file below resample/, train_sample/ and tfrecords/ (resampled splits, reports, plots,
    train files, fold files, scale dict, TFRecord shards and metadata) is byte-identical between
    the module run and the same command run again in another directory."""
    tracerflow("run", *PRE, cwd=tmp_path, check=True)
    twin = output_root(tmp_path)
    ours = _stage_files(root)
    assert ours == _stage_files(twin)
    assert {p.suffix for p in ours} >= {".h5", ".json", ".png", ".tfrecord"}
    for rel in ours:
        assert (root / rel).read_bytes() == (twin / rel).read_bytes(), rel


@pytest.mark.slow
def test_a_parallel_run_gives_equal_datasets_attributes_and_other_files(root, parallel_root):
    """With two workers: every HDF5 file has the same datasets (same bytes of every value, NaNs
    included), attributes, dtypes, chunking and filters; every other file (JSON, PNG, TFRecord
    shards) is byte-identical."""
    ours = _stage_files(root)
    assert ours == _stage_files(parallel_root)
    for rel in ours:
        if rel.suffix != ".h5":
            assert (root / rel).read_bytes() == (parallel_root / rel).read_bytes(), rel
            continue
        with h5py.File(root / rel, "r") as a, h5py.File(parallel_root / rel, "r") as b:
            assert dict(a.attrs) == dict(b.attrs), rel
            names: list[str] = []
            a.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            b_names: list[str] = []
            b.visititems(lambda name, obj: b_names.append(name) if isinstance(obj, h5py.Dataset) else None)
            assert names == b_names, rel
            for name in names:
                x, y = a[name], b[name]
                assert (x.dtype, x.shape, x.chunks, x.compression, x.shuffle) == \
                       (y.dtype, y.shape, y.chunks, y.compression, y.shuffle), (rel, name)
                assert dict(x.attrs) == dict(y.attrs), (rel, name)
                vx, vy = x[()], y[()]
                assert (vx == vy if isinstance(vx, bytes) else vx.tobytes() == vy.tobytes()), (rel, name)


@pytest.mark.slow
def test_a_parallel_run_gives_byte_identical_hdf5_files(root, parallel_root):
    for rel in _stage_files(root):
        if rel.suffix == ".h5":
            assert (root / rel).read_bytes() == (parallel_root / rel).read_bytes(), rel


@pytest.mark.slow
def test_another_project_seed_gives_another_order(root, tmp_path):
    """Whole workflow with project.seed=7. The seed also changes the generated toy sample, so the
    jets themselves differ and only this is compared: the train file is complete, made from
    another digest, its jets/hash sequence differs from seed 42's, and its fold ids are those of
    seed 7 (fold_of(hash, k, 7)), which for the same hashes differ from seed 42's."""
    tracerflow("run", *PRE, "--set", "project.seed=7", cwd=tmp_path, check=True)
    ours, theirs = root / "train_sample" / "train.h5", output_root(tmp_path) / "train_sample" / "train.h5"
    assert _attrs(theirs)["complete"]
    assert _attrs(theirs)["config_digest"] != _attrs(ours)["config_digest"]
    hashes = datasets(ours)["jets/hash"]
    other = datasets(theirs)
    assert not np.array_equal(other["jets/hash"], hashes)
    assert np.array_equal(other["jets/fold"], fold_of(other["jets/hash"], N_FOLDS, 7))
    assert not np.array_equal(fold_of(other["jets/hash"], N_FOLDS, 7), fold_of(other["jets/hash"], N_FOLDS, SEED))


@pytest.mark.slow
def test_resampling_with_another_seed_reorders_the_same_jets(root):
    """Library level, on the run's own selections files (so the jets are fixed):

    - resample() with the config's spec, read in chunks of 333 jets, gives exactly the rows of
      resample/<split>.h5 (index columns, label, weight) that the task wrote with chunks of 700;
    - countup with seed 7 and split_seed 42: every split holds the same jets before resampling
      (equal histograms), keeps the same set of target-class jets (one copy each), and orders the
      rows differently;
    - method none with seeds 42 and 7 (split_seed 42): every split has the same multiset of rows
      (source, row, hash, item, copy, label, weight) in another order.
    """
    block = {key: CFG["resample"][key] for key in (*SPEC_KEYS, "label", "classes", "target")}
    sources = _json_attr(root / "resample" / "train.h5", "sources")
    paths = [root / "selections" / sample / f"{Path(file).stem}.h5" for sample, file in sources]
    spec = spec_from_config(block, SEED)
    chunks = selection_chunks(paths, [spec.label, *spec.variables], 333)
    ours = resample(spec, chunks)
    for split in CONVERTED:
        written = datasets(root / "resample" / f"{split}.h5")
        for name in INDEX_COLUMNS:
            assert np.array_equal(getattr(ours[split], name), written[f"index/{name}"]), (split, name)
        assert np.array_equal(ours[split].label, written["label"])
        assert np.array_equal(ours[split].weight, written["weight"])

    target = spec.target_index
    other = resample(spec_from_config({**block, "split_seed": SEED}, 7), chunks)
    for split in spec.split_names:
        a, b = ours[split], other[split]
        assert np.array_equal(a.hist_before, b.hist_before), split
        jets_a = {(s, r, i) for s, r, i, lab in zip(a.source, a.row, a.item, a.label) if lab == target}
        jets_b = {(s, r, i) for s, r, i, lab in zip(b.source, b.row, b.item, b.label) if lab == target}
        assert jets_a == jets_b and len(jets_a) == int((a.label == target).sum()), split
        assert not np.array_equal(a.hash, b.hash), split

    plain = {**block, "method": "none", "split_seed": SEED}
    first = resample(spec_from_config(plain, SEED), chunks)
    second = resample(spec_from_config(plain, 7), chunks)
    columns = ("source", "row", "hash", "item", "copy", "label", "weight")
    for split in spec.split_names:
        a = np.rec.fromarrays([getattr(first[split], c) for c in columns], names=columns)
        b = np.rec.fromarrays([getattr(second[split], c) for c in columns], names=columns)
        assert len(a) > 0 and np.array_equal(np.sort(a), np.sort(b)), split
        assert not np.array_equal(a, b), split


# 4. bad configs ----------------------------------------------------------------------------

BAD_OVERRIDES = [  # (override, key the error must name, words of the message)
    ("resample.method=pdfx", "resample.method", "'pdfx'"),
    ("resample.variables.pt=[[20, 250, 23], [300, 1000, 15]]", "resample.variables.pt", "contiguous"),
    ("resample.variables.mass=[[0, 100, 10]]", "resample.variables.mass", "not a selection output"),
    ("resample.target=taujets", "resample.target", "'taujets'"),
    ("write.jets.variables=[pt, abs_eta, mass]", "write.jets.variables[2]", "'mass' is not a selection output"),
    ("write.tracks.labels=[flavour]", "write.tracks.labels[0]", "'flavour'"),
    ("tfrecords.splits=[train, valid]", "tfrecords.splits[1]", "'valid' is not a resample split"),
    ("write.format=folds", "train", "write.format"),
    ("train.folds=[0, 7]", "train.folds[1]", "does not exist"),
    ("train.model.set.type=lstm", "train.model.set.type", "'lstm'"),
    ("tfrecords.n_add_vars=3", "tfrecords.n_add_vars", "exceeds"),
]


@pytest.mark.parametrize("override,key,says", BAD_OVERRIDES, ids=[b[0].split("=")[0] for b in BAD_OVERRIDES])
def test_bad_preprocessing_setting_fails_before_anything_runs(override, key, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--set", override]) == 2
    named, message = config_error(capsys.readouterr().err, f"<embedded default> (with --set {override})")
    assert named == key and says in message
    assert list(tmp_path.iterdir()) == []


def test_bad_preprocessing_config_file_exits_2_through_the_command(tmp_path):
    data = yaml.safe_load(default_config_path().read_text())
    data["resample"]["variables"]["pt"] = [[20, 250, 23], [260, 1000, 15]]
    config = tmp_path / "analysis.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = tracerflow("run", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2
    key, message = config_error(proc.stderr, str(config))
    assert key == "resample.variables.pt" and "contiguous" in message
    proc = tracerflow("run", "--set", "resample.method=pdfx", cwd=tmp_path)
    assert proc.returncode == 2
    assert config_error(proc.stderr, "<embedded default> (with --set resample.method=pdfx)")[0] == "resample.method"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["analysis.yaml"]


# 5. failures -------------------------------------------------------------------------------


@pytest.mark.slow
def test_failing_write_train_sample_keeps_what_was_written(work, tmp_path):
    """The train split's resampled file loses a jet variable: WriteTrainSample fails, the run exits 1,
    and nothing is rewritten or left behind (no train file, no temporary file)."""
    out = _copy_run(work, tmp_path)
    shutil.rmtree(out / "train_sample")
    shutil.rmtree(out / "tfrecords")
    broken = out / "resample" / "train.h5"
    with h5py.File(broken, "r+") as f:
        del f["jets/pt"]
    before = file_mtimes(out)
    proc = tracerflow("run", *PRE, cwd=tmp_path)
    assert proc.returncode == 1
    assert "WriteTrainSample" in proc.stdout and str(broken) in proc.stderr and "'pt'" in proc.stderr
    assert file_mtimes(out) == before
    for split in CONVERTED:
        assert _attrs(out / "resample" / f"{split}.h5")["complete"]
    shown = tracerflow("show", *PRE, cwd=tmp_path, check=True).stdout
    assert "[done] Resample(split=train)" in shown
    assert "[pending (missing)] WriteTrainSample(split=train)" in shown
    assert "[pending (missing)] ConvertTFRecords(split=train)" in shown


@pytest.mark.slow
def test_graphs_that_do_not_line_up_stop_resample_naming_the_file(work, tmp_path):
    """A graphs file whose events no longer match its selections file (hashes rewritten in place, so
    its target still looks done): Resample fails naming it, the run exits 1, no file that was there
    changes and no resampled split is written (its report and plots, written first, may be)."""
    out = _copy_run(work, tmp_path)
    for name in ("resample", "train_sample", "tfrecords"):
        shutil.rmtree(out / name)
    broken = out / "graphs" / "zprime" / "zprime_0001.h5"
    with h5py.File(broken, "r+") as f:
        f["index/hash"][...] = f["index/hash"][()][::-1]
    before = file_mtimes(out)
    proc = tracerflow("run", *PRE, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Resample" in proc.stdout and str(broken) in proc.stderr and "do not line up" in proc.stderr
    after = file_mtimes(out)
    assert {path: after.get(path) for path in before} == before
    assert not list(out.glob("resample/**/*.h5")) and not list(out.glob("resample/**/.*"))


@pytest.mark.slow
def test_a_lost_scale_dict_does_not_block_the_other_splits(work, tmp_path):
    out = _copy_run(work, tmp_path)
    for name in ("scale_dict.json", "val.h5", "val_folds.h5"):
        (out / "train_sample" / name).unlink()
    shutil.rmtree(out / "tfrecords" / "val")
    proc = tracerflow("run", *PRE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(out / "train_sample" / "train.h5") as train, h5py.File(out / "train_sample" / "val.h5") as val:
        assert val.attrs["complete"]
        assert json.loads(val["scale_dict"][()]) == json.loads(train["scale_dict"][()])


# 6. statistics -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stats_root(tmp_path_factory) -> Path:
    """~30k jets (about 16k in the train split), run up to Resample."""
    work = tmp_path_factory.mktemp("statistics")
    tracerflow("run", *STATS, "--until", "Resample", cwd=work, check=True)
    return output_root(work)


def _chi2(w1: np.ndarray, w2: np.ndarray, var1: np.ndarray, var2: np.ndarray) -> tuple[int, float]:
    """Two-sample chi2 of weighted histograms (Gagunashvili 2006): ndf and p-value."""
    total1, total2 = w1.sum(), w2.sum()
    denominator = total1**2 * var2 + total2**2 * var1
    used = denominator > 0
    statistic = np.sum((total1 * w2[used] - total2 * w1[used]) ** 2 / denominator[used])
    ndf = int(used.sum()) - 1
    return ndf, float(stats.chi2.sf(statistic, ndf))


@pytest.mark.slow
def test_countup_makes_every_class_follow_the_b_jets_in_pt_and_abs_eta(stats_root):
    """The report's chi2 p-values after countup exceed 0.01 for every non-target class and
    variable while the light jets' pt before resampling is far off; the same p-values follow
    from histograms of the rows actually written to resample/train.h5 (duplicates counted in the
    bin variances)."""
    report = json.loads((stats_root / "resample" / "report_train.json").read_text())
    split = report["splits"]["train"]
    assert report["method"] == "countup" and split["resampled"]
    target = report["target"]
    others = [c for c in CLASSES if c != target]
    variables = list(CFG["resample"]["variables"])
    assert set(split["agreement"]) == set(variables)
    for variable in variables:
        for cls in others:
            assert split["agreement"][variable][cls]["after"]["p_value"] > 0.01, (variable, cls)
    assert split["agreement"]["pt"]["ujets"]["before"]["p_value"] < 1e-10

    rows = datasets(stats_root / "resample" / "train.h5")
    label = rows["label"]
    assert [split["classes"][c]["after"] for c in CLASSES] == np.bincount(label, minlength=len(CLASSES)).tolist()
    assert split["classes"][target]["duplicates"] == 0
    assert min(split["classes"][c]["after"] for c in CLASSES) > 3000
    jet = rows["index/source"].astype(np.int64) << 40 | rows["index/row"]
    _, inverse, copies = np.unique(jet, return_inverse=True, return_counts=True)
    values = _selected(stats_root, "train", variables)
    for variable in variables:
        edges = np.asarray(report["variables"][variable])
        x = values[variable]
        assert ((x >= edges[0]) & (x <= edges[-1])).all(), variable
        hist = {c: np.histogram(x[label == c], edges)[0].astype(float) for c in range(len(CLASSES))}
        var = {c: np.histogram(x[label == c], edges, weights=copies[inverse][label == c])[0] for c in hist}
        t = CLASSES.index(target)
        for cls in others:
            c = CLASSES.index(cls)
            ndf, p = _chi2(hist[c], hist[t], var[c], var[t])
            after = split["agreement"][variable][cls]["after"]
            assert ndf == after["ndf"] and p == pytest.approx(after["p_value"], rel=1e-6), (variable, cls)
            assert p > 0.01, (variable, cls)
