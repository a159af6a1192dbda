"""Read TFRecord shards back with tf.data, shapes and dtypes taken from ``metadata.json``.

TensorFlow is imported inside the functions, so the rest of tracerflow never needs it;
:func:`read_shard` decodes one shard in numpy alone, for training under torch.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tracerflow.events.remote import preload_xrootd
from tracerflow.tfrecords.crc32c import crc32c, mask
from tracerflow.tfrecords.records import FRAME_OVERHEAD, example_layout
from tracerflow.tfrecords.writer import METADATA, SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    import tensorflow as tf


# dtypes tf.io.decode_raw cannot produce: decoded as these, then bitcast (or, for bool, cast) back
_RAW_DTYPES = {"bool": "uint8", "uint32": "int32", "uint64": "int64"}


def load_metadata(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata.json`` of a finished conversion (a missing file means it did not finish)."""
    path = Path(out_dir) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {out_dir} is not a finished TFRecords conversion")
    metadata = json.loads(path.read_text(encoding="utf-8"))
    if metadata.get("schema") != SCHEMA or metadata.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: {metadata.get('schema')!r} version {metadata.get('schema_version')}, "
            f"this tracerflow reads {SCHEMA!r} version {SCHEMA_VERSION}"
        )
    return metadata


def shard_paths(out_dir: str | os.PathLike, metadata: dict[str, Any] | None = None) -> list[str]:
    """Paths of the shards, in jet order."""
    metadata = metadata or load_metadata(out_dir)
    return [str(Path(out_dir) / s["file"]) for s in metadata["shards"]]


def tfrecord_dataset(
    out_dir: str | os.PathLike,
    batch_size: int | None = None,
    *,
    features: Sequence[str] | None = None,
    num_parallel_reads: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of dicts ``{feature: tensor}``, one jet per element or batches of ``batch_size``.

    Records are parsed as ``FixedLenFeature`` strings, decoded with ``tf.io.decode_raw`` and
    reshaped to the shapes in the metadata; ``valid`` comes back as bool. Order is jet order.
    """
    preload_xrootd()  # XRootD's bindings crash when loaded after TensorFlow
    import tensorflow as tf

    metadata = load_metadata(out_dir)
    specs = metadata["features"]
    keys = list(features) if features is not None else sorted(specs)
    unknown = [k for k in keys if k not in specs]
    if unknown:
        raise KeyError(f"features {unknown} are not in {out_dir} (it has {sorted(specs)})")
    parse_spec = {k: tf.io.FixedLenFeature([], tf.string) for k in keys}

    def convert(parsed, lead: list[int]):
        out = {}
        for k in keys:
            dtype = specs[k]["dtype"]
            raw_dtype = _RAW_DTYPES.get(dtype, dtype)
            values = tf.io.decode_raw(parsed[k], tf.dtypes.as_dtype(raw_dtype), little_endian=True)
            values = tf.reshape(values, lead + list(specs[k]["shape"]))
            if dtype == "bool":
                values = tf.cast(values, tf.bool)
            elif raw_dtype != dtype:
                values = tf.bitcast(values, tf.dtypes.as_dtype(dtype))
            out[k] = values
        return out

    ds = tf.data.TFRecordDataset(
        shard_paths(out_dir, metadata),
        compression_type=metadata.get("compression") or "",
        num_parallel_reads=num_parallel_reads,
    )
    if batch_size is None:
        return ds.map(lambda rec: convert(tf.io.parse_single_example(rec, parse_spec), []))
    return ds.batch(batch_size).map(lambda recs: convert(tf.io.parse_example(recs, parse_spec), [-1]))


def read_tfrecords(
    out_dir: str | os.PathLike, features: Sequence[str] | None = None, batch_size: int = 16384
) -> dict[str, np.ndarray]:
    """Every jet of a conversion as numpy arrays keyed by feature name (equal to the train file's)."""
    metadata = load_metadata(out_dir)
    specs = metadata["features"]
    keys = list(features) if features is not None else sorted(specs)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for batch in tfrecord_dataset(out_dir, batch_size, features=keys):
        for k in keys:
            parts[k].append(batch[k].numpy())
    return {
        k: np.concatenate(v) if v else np.zeros((0, *specs[k]["shape"]), dtype=specs[k]["dtype"])
        for k, v in parts.items()
    }


def read_shard(
    out_dir: str | os.PathLike,
    index: int,
    features: Sequence[str] | None = None,
    rows: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The jets of shard ``index`` (``rows`` of it, in that order) decoded in numpy, without TensorFlow.

    Every record of a tracerflow shard has the same byte layout, rebuilt from the metadata, so
    each feature is a fixed column of the ``(n, record length)`` frames; uncompressed shards
    are memory-mapped and only ``rows`` are copied. Values equal :func:`read_tfrecords`'.
    """
    metadata = metadata or load_metadata(out_dir)
    specs = metadata["features"]
    keys = list(features) if features is not None else sorted(specs)
    dtypes = {k: np.dtype("uint8" if v["dtype"] == "bool" else v["dtype"]) for k, v in specs.items()}
    layout = example_layout({k: int(np.prod(specs[k]["shape"], dtype=np.int64)) * dtypes[k].itemsize for k in specs})
    shard = metadata["shards"][index]
    path = Path(out_dir) / shard["file"]
    width = FRAME_OVERHEAD + layout.length
    compression = metadata.get("compression")
    if compression is None:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    else:
        data = path.read_bytes()
        raw = np.frombuffer(gzip.decompress(data) if compression == "GZIP" else zlib.decompress(data), dtype=np.uint8)
    if raw.size != shard["n_jets"] * width:
        raise ValueError(f"{path}: {raw.size} bytes, expected {shard['n_jets']} records of {width}")
    frames = raw.reshape(shard["n_jets"], width)
    frames = np.asarray(frames if rows is None else frames[np.asarray(rows)])
    length = np.uint64(layout.length).astype("<u8").tobytes()
    head = np.frombuffer(length + np.uint32(mask(crc32c(length))).astype("<u4").tobytes(), dtype=np.uint8)
    if not np.array_equal(frames[:, :12], np.broadcast_to(head, (len(frames), 12))):
        raise ValueError(f"{path}: record headers do not match the layout of {METADATA}")
    out = {}
    for k in keys:
        lo = 12 + layout.offsets[k]
        column = np.ascontiguousarray(frames[:, lo:lo + layout.nbytes[k]])
        values = column.view(dtypes[k].newbyteorder("<")).reshape(len(frames), *specs[k]["shape"])
        out[k] = values.astype(specs[k]["dtype"])
    return out
