"""TFRecords: wire format against TensorFlow's parsers, CRC checks, shards, metadata and exact read-back."""
from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from tracerflow.tfrecords import load_metadata, read_tfrecords, shard_paths, tfrecord_dataset, write_tfrecords
from tracerflow.tfrecords.crc32c import crc32c, crc32c_rows, mask
from tracerflow.tfrecords import writer
from tracerflow.tfrecords.records import encode_frames, example_layout, payload
from tracerflow.write import read_umami

from .test_train_file import make_scale_dict, synthetic_chunks, write

tf = pytest.importorskip("tensorflow")

N_JETS = 2300
CHUNK = 500
EXPECTED = {
    "X_jets": "jets/inputs",
    "X_trk": "tracks/inputs",
    "valid": "tracks/valid",
    "Y": "jets/labels_one_hot",
    "weight": "jets/weight",
    "hash": "jets/hash",
    "fold": "jets/fold",
}


@pytest.fixture(scope="module")
def train_path(tmp_path_factory):
    chunks = synthetic_chunks(n=N_JETS, chunk=800, max_tracks=40, seed=2)
    path = tmp_path_factory.mktemp("train") / "train.h5"
    write(path, chunks, make_scale_dict(chunks), compression="lzf", config_digest="digest-t")
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory, train_path):
    out = tmp_path_factory.mktemp("records")
    metadata = write_tfrecords(train_path, out, chunk_size=CHUNK, n_add_vars=2, config_digest="digest-r")
    return out, metadata


def test_crc32c_reference_values():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for length in (0, 1, 7, 8, 9, 63, 64, 65, 1001):
        rows = rng.integers(0, 256, (11, length), dtype=np.uint8)
        assert crc32c_rows(rows).tolist() == [crc32c(r.tobytes()) for r in rows]
    assert mask(np.array([0x12345678], np.uint32))[0] == mask(0x12345678)


def test_wire_format_equals_tensorflow_serialization():
    rng = np.random.default_rng(1)
    arrays = {
        "X_trk": rng.normal(size=(4, 40, 10)).astype(np.float16),
        "valid": rng.random((4, 40)) > 0.5,
        "hash": rng.integers(0, 2**62, 4).astype(np.uint64),
        "weight": rng.random(4).astype(np.float32),
    }
    payloads = {k: payload(v) for k, v in arrays.items()}
    layout = example_layout({k: v.shape[1] for k, v in payloads.items()})
    frames = encode_frames(layout, payloads)
    for i in range(4):
        data = frames[i, 12 : 12 + layout.length].tobytes()
        ref = tf.train.Example(
            features=tf.train.Features(
                feature={
                    k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[payloads[k][i].tobytes()]))
                    for k in sorted(payloads)
                }
            )
        )
        assert data == ref.SerializeToString(deterministic=True)
        length = int.from_bytes(frames[i, :8].tobytes(), "little")
        assert length == layout.length
        assert int.from_bytes(frames[i, 8:12].tobytes(), "little") == mask(crc32c(frames[i, :8].tobytes()))
        assert int.from_bytes(frames[i, -4:].tobytes(), "little") == mask(crc32c(data))


def test_example_parses_with_from_string(records, train_path):
    out, _ = records
    raw = next(iter(tf.data.TFRecordDataset(shard_paths(out)))).numpy()
    example = tf.train.Example.FromString(raw)
    assert sorted(example.features.feature) == sorted(list(EXPECTED) + ["X_add_vars"])
    first = read_umami(train_path, 0, 1)
    trk = np.frombuffer(example.features.feature["X_trk"].bytes_list.value[0], dtype="<f2")
    np.testing.assert_array_equal(trk.reshape(first["tracks/inputs"].shape[1:]), first["tracks/inputs"][0])


def test_tf_data_gives_the_train_file_exactly(records, train_path):
    out, _ = records
    train = read_umami(train_path)
    got = read_tfrecords(out)
    assert sorted(got) == sorted(list(EXPECTED) + ["X_add_vars"])
    for key, source in EXPECTED.items():
        assert got[key].dtype == train[source].dtype, key
        np.testing.assert_array_equal(got[key], train[source], err_msg=key)
    assert got["X_trk"].dtype == np.float16
    np.testing.assert_array_equal(got["X_add_vars"], train["jets/inputs"][:, :2])


def test_single_examples_and_batches(records, train_path):
    out, _ = records
    train = read_umami(train_path, 0, 3)
    elements = list(tfrecord_dataset(out).take(3))
    for i, element in enumerate(elements):
        assert element["X_trk"].shape == train["tracks/inputs"].shape[1:]
        assert element["valid"].dtype == tf.bool
        np.testing.assert_array_equal(element["X_trk"].numpy(), train["tracks/inputs"][i])
        np.testing.assert_array_equal(element["hash"].numpy(), train["jets/hash"][i])
    batch = next(iter(tfrecord_dataset(out, batch_size=128, features=["Y", "weight"])))
    assert set(batch) == {"Y", "weight"} and batch["Y"].shape == (128, 3)


def test_shards_and_metadata(records, train_path):
    out, metadata = records
    files = sorted(p.name for p in out.iterdir())
    n_shards = -(-N_JETS // CHUNK)
    assert files == ["metadata.json"] + [f"shard_{i:05d}.tfrecord" for i in range(n_shards)]
    assert [s["n_jets"] for s in metadata["shards"]] == [CHUNK] * (n_shards - 1) + [N_JETS - CHUNK * (n_shards - 1)]
    for path, shard in zip(shard_paths(out), metadata["shards"]):
        assert sum(1 for _ in tf.data.TFRecordDataset(path)) == shard["n_jets"]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == metadata == load_metadata(out)
    assert metadata["n_jets"] == N_JETS and metadata["n_shards"] == n_shards and metadata["chunk_size"] == CHUNK
    assert metadata["n_add_vars"] == 2 and metadata["add_variables"] == ["pt", "eta"]
    assert metadata["features"]["X_trk"] == {"shape": [40, 4], "dtype": "float16"}
    assert metadata["features"]["valid"] == {"shape": [40], "dtype": "bool"}
    assert metadata["features"]["Y"] == {"shape": [3], "dtype": "uint8"}
    assert metadata["features"]["hash"] == {"shape": [], "dtype": "uint64"}
    assert metadata["class_names"] == ["ujets", "cjets", "bjets"]
    assert metadata["track_variables"] == ["d0", "z0", "pt_frac", "dr"]
    assert metadata["source"]["digest"].startswith("sha256:") and metadata["source"]["config_digest"] == "digest-t"
    assert metadata["config_digest"] == "digest-r"


def test_no_add_vars_and_rewrite_removes_stale_shards(tmp_path, train_path):
    out = tmp_path / "rec"
    write_tfrecords(train_path, out, chunk_size=300)
    metadata = write_tfrecords(train_path, out, chunk_size=1000, n_add_vars=0)
    assert "X_add_vars" not in metadata["features"]
    assert sorted(p.name for p in out.glob("shard_*")) == [s["file"] for s in metadata["shards"]]
    assert len(read_tfrecords(out, features=["hash"])["hash"]) == N_JETS


@pytest.mark.parametrize("compression", ["GZIP", "ZLIB"])
def test_compression(tmp_path, train_path, records, compression):
    out = tmp_path / compression
    metadata = write_tfrecords(train_path, out, chunk_size=CHUNK, compression=compression)
    assert metadata["compression"] == compression
    shard = (out / "shard_00000.tfrecord").read_bytes()
    (gzip.decompress if compression == "GZIP" else zlib.decompress)(shard)
    np.testing.assert_array_equal(read_tfrecords(out)["X_trk"], read_tfrecords(records[0])["X_trk"])


def test_small_read_blocks(tmp_path, train_path, records, monkeypatch):
    monkeypatch.setattr(writer, "READ_ROWS", 700)
    out = tmp_path / "small_reads"
    metadata = write_tfrecords(train_path, out, chunk_size=300, n_add_vars=2)
    assert [s["n_jets"] for s in metadata["shards"]][:3] == [300, 300, 300]
    got, ref = read_tfrecords(out), read_tfrecords(records[0])
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])


def test_deterministic_bytes(tmp_path, train_path, records):
    out, _ = records
    again = tmp_path / "again"
    write_tfrecords(train_path, again, chunk_size=CHUNK, n_add_vars=2, config_digest="digest-r")
    for name in [s["file"] for s in load_metadata(out)["shards"]] + ["metadata.json"]:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_corrupted_byte_is_reported(tmp_path, train_path):
    out = tmp_path / "bad"
    write_tfrecords(train_path, out, chunk_size=CHUNK)
    shard = out / "shard_00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError, match="corrupted record"):
        read_tfrecords(out)


def test_unfinished_directory_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished"):
        load_metadata(tmp_path)
