"""tf.train.Example wire format and TFRecord framing for many equal-length records, in numpy.

Each feature is a ``BytesList`` holding one value: the jet's raw little-endian bytes. When every
feature has a fixed byte length, every serialized Example has the same length and the same
protobuf framing bytes, so a shard is one template broadcast over ``(n, length)`` with the
payloads copied into fixed columns. A TFRecord frame is ``uint64 length, masked crc32c of the
length, data, masked crc32c of the data`` (all little-endian).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tracerflow.tfrecords.crc32c import crc32c, crc32c_rows, mask

FRAME_OVERHEAD = 16


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, body_len: int) -> bytes:
    """Header of a length-delimited field: key byte (field number, wire type 2) and length."""
    return bytes([(tag << 3) | 2]) + varint(body_len)


@dataclass(frozen=True)
class ExampleLayout:
    """Byte layout of an Example whose features are single fixed-length byte strings."""

    template: np.ndarray
    offsets: dict[str, int]
    nbytes: dict[str, int]

    @property
    def length(self) -> int:
        return int(self.template.size)

    def gaps(self) -> list[tuple[int, int]]:
        """Byte ranges outside the payloads: the protobuf framing, the same in every record."""
        out, pos = [], 0
        for key, off in sorted(self.offsets.items(), key=lambda item: item[1]):
            if off > pos:
                out.append((pos, off))
            pos = off + self.nbytes[key]
        if pos < self.length:
            out.append((pos, self.length))
        return out


def example_layout(nbytes: Mapping[str, int]) -> ExampleLayout:
    """Layout of ``Example{features{feature{key: bytes_list{value: <nbytes[key] bytes>}}}}``, keys sorted."""
    entries: list[tuple[bytes, str, int]] = []
    for key in sorted(nbytes):
        size = int(nbytes[key])
        key_bytes = key.encode("utf-8")
        bytes_list_head = _field(1, size)
        feature_head = _field(1, len(bytes_list_head) + size)
        feature_len = len(feature_head) + len(bytes_list_head) + size
        entry_head = _field(1, len(key_bytes)) + key_bytes + _field(2, feature_len)
        entry_len = len(entry_head) + feature_len
        head = _field(1, entry_len) + entry_head + feature_head + bytes_list_head
        entries.append((head, key, size))
    features_len = sum(len(head) + size for head, _, size in entries)
    buf = bytearray(_field(1, features_len))
    offsets = {}
    for head, key, size in entries:
        buf += head
        offsets[key] = len(buf)
        buf += bytes(size)
    template = np.frombuffer(bytes(buf), dtype=np.uint8).copy()
    return ExampleLayout(template, offsets, {k: int(v) for k, v in nbytes.items()})


def payload(values: np.ndarray) -> np.ndarray:
    """Per-row raw little-endian bytes of ``values`` (first axis = records) as ``(n, nbytes)`` uint8."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return values.view(np.uint8).reshape(len(values), -1)


def encode_frames(layout: ExampleLayout, payloads: Mapping[str, np.ndarray]) -> np.ndarray:
    """TFRecord frames of Examples, one row per record: ``(n, 16 + layout.length)`` uint8."""
    if set(payloads) != set(layout.offsets):
        raise ValueError(f"payload keys {sorted(payloads)} differ from the layout's {sorted(layout.offsets)}")
    n = len(next(iter(payloads.values())))
    length = layout.length
    frames = np.empty((n, FRAME_OVERHEAD + length), dtype=np.uint8)
    head = np.frombuffer(np.uint64(length).astype("<u8").tobytes(), dtype=np.uint8)
    frames[:, :8] = head
    frames[:, 8:12] = np.frombuffer(np.uint32(mask(crc32c(head.tobytes()))).astype("<u4").tobytes(), dtype=np.uint8)
    data = frames[:, 12 : 12 + length]
    for lo, hi in layout.gaps():
        data[:, lo:hi] = layout.template[lo:hi]
    for key, off in layout.offsets.items():
        block = payloads[key]
        if block.shape != (n, layout.nbytes[key]):
            raise ValueError(f"{key}: payload of shape {block.shape}, expected {(n, layout.nbytes[key])}")
        data[:, off : off + layout.nbytes[key]] = block
    frames[:, 12 + length :] = mask(crc32c_rows(data)).astype("<u4").view(np.uint8).reshape(n, 4)
    return frames
