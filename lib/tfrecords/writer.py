"""ConvertTFRecords: the umami train file as TFRecord shards of ``chunk_size`` jets plus ``metadata.json``.

One ``tf.train.Example`` per jet with umami's feature keys, each a single raw little-endian byte
string: ``X_jets`` (jet inputs), ``X_trk`` (track inputs), ``valid`` (track mask, uint8),
``Y`` (one-hot labels, uint8), ``weight`` (float32), ``X_add_vars`` (the first ``n_add_vars``
jet inputs, for conditional models; absent when 0), ``hash`` (uint64) and ``fold`` (int16).
Inputs keep the train file's precision, so reading back gives the train file's values exactly.
Shards are written without TensorFlow and without a per-jet Python loop; ``metadata.json`` is
written last, so a directory without it is unfinished.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tracerflow import __version__
from tracerflow.io.atomic import write_atomic
from tracerflow.tfrecords.records import encode_frames, example_layout, payload
from tracerflow.write.umami_file import SCHEMA as TRAIN_SCHEMA
from tracerflow.write.umami_file import UmamiFile

SCHEMA = "tracerflow.tfrecords"
SCHEMA_VERSION = 1
METADATA = "metadata.json"
COMPRESSIONS = (None, "GZIP", "ZLIB")
READ_ROWS = 65536
SOURCES = {
    "X_jets": "jets/inputs",
    "X_trk": "tracks/inputs",
    "valid": "tracks/valid",
    "Y": "jets/labels_one_hot",
    "weight": "jets/weight",
    "hash": "jets/hash",
    "fold": "jets/fold",
}


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.tfrecord"


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as ``sha256:<hex>``."""
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def _compress(frames: np.ndarray, compression: str | None) -> bytes | memoryview:
    """The shard bytes as TensorFlow's readers expect them for ``compression_type``."""
    data = memoryview(np.ascontiguousarray(frames)).cast("B")
    if compression == "GZIP":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "ZLIB":
        return zlib.compress(data, 6)
    return data


def _write_shard(path: Path, frames: np.ndarray, compression: str | None) -> None:
    write_atomic(path, _compress(frames, compression))


def _features(arrays: Mapping[str, np.ndarray], n_add_vars: int) -> dict[str, np.ndarray]:
    """The Example features of a block of jets, keyed by umami's names."""
    out = {key: arrays[src] for key, src in SOURCES.items()}
    if n_add_vars:
        out["X_add_vars"] = arrays["jets/inputs"][:, :n_add_vars]
    return out


def write_tfrecords(
    train_file_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    chunk_size: int = 5000,
    n_add_vars: int = 0,
    compression: str | None = None,
    config_digest: str = "",
    created_by: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Convert a train file into shards ``out_dir/shard_00000.tfrecord``, ... and return the metadata;
    ``progress(jets encoded, jets)`` after each shard.

    ``compression`` is TensorFlow's ``compression_type`` (None, ``"GZIP"`` or ``"ZLIB"``).
    Shards of an earlier conversion that this one does not rewrite are removed.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METADATA).unlink(missing_ok=True)

    shards: list[dict[str, Any]] = []
    # hashing the source and compressing and writing shards release the GIL, so two threads
    # run them beside the encoding; at most one shard waits to be written
    with ThreadPoolExecutor(2) as pool, UmamiFile(train_file_path) as train:
        digest = pool.submit(file_digest, train_file_path)
        writing = None
        n_jets = len(train)
        jet_vars = train.jet_variables
        if not 0 <= n_add_vars <= len(jet_vars):
            raise ValueError(f"n_add_vars must lie in [0, {len(jet_vars)}], got {n_add_vars}")
        shapes = {key: train.dataset(src).shape[1:] for key, src in SOURCES.items()}
        dtypes = {key: train.dataset(src).dtype for key, src in SOURCES.items()}
        if n_add_vars:
            shapes["X_add_vars"] = (n_add_vars,)
            dtypes["X_add_vars"] = dtypes["X_jets"]
        dtypes["valid"] = np.dtype(np.bool_)
        nbytes = {k: int(np.prod(shapes[k], dtype=np.int64)) * dtypes[k].itemsize for k in shapes}
        layout = example_layout(nbytes)
        read_rows = chunk_size * max(1, READ_ROWS // chunk_size)
        for block_start in range(0, n_jets, read_rows):
            block = train.read(block_start, block_start + read_rows, names=list(SOURCES.values()))
            features = _features(block, n_add_vars)
            n_block = len(block["jets/hash"])
            for offset in range(0, n_block, chunk_size):
                rows = slice(offset, min(offset + chunk_size, n_block))
                frames = encode_frames(layout, {key: payload(values[rows]) for key, values in features.items()})
                if writing is not None:
                    writing.result()
                index = len(shards)
                writing = pool.submit(_write_shard, out_dir / shard_name(index), frames, compression)
                shards.append({"file": shard_name(index), "n_jets": rows.stop - rows.start})
                if progress is not None:
                    progress(block_start + rows.stop, n_jets)
        if writing is not None:
            writing.result()
        names = {
            "jet_variables": jet_vars,
            "track_variables": train.track_variables,
            "class_names": train.class_names,
        }
        source_attrs = {k: train.attrs[k] for k in ("config_digest", "created_by") if k in train.attrs}
        source_digest = digest.result()

    keep = {s["file"] for s in shards}
    for stale in out_dir.glob("shard_*.tfrecord"):
        if stale.name not in keep:
            stale.unlink()

    metadata = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tracerflow_version": __version__,
        "config_digest": config_digest,
        "created_by": created_by,
        "n_jets": n_jets,
        "n_shards": len(shards),
        "chunk_size": int(chunk_size),
        "n_add_vars": int(n_add_vars),
        "compression": compression,
        "shards": shards,
        "features": {k: {"shape": [int(d) for d in shapes[k]], "dtype": dtypes[k].name} for k in sorted(shapes)},
        **names,
        "add_variables": jet_vars[:n_add_vars],
        "source": {
            "file": Path(train_file_path).name,
            "schema": TRAIN_SCHEMA,
            "digest": source_digest,
            **{k: str(v) for k, v in source_attrs.items()},
        },
        "n_jet_features": int(shapes["X_jets"][0]),
        "n_trks": int(shapes["X_trk"][0]),
        "n_trk_features": int(shapes["X_trk"][1]),
        "n_dim": int(shapes["Y"][0]),
    }
    write_atomic(out_dir / METADATA, (json.dumps(metadata, sort_keys=True, indent=2) + "\n").encode("utf-8"))
    return metadata
