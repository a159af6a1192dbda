"""The identity of an input file: the UUID read from ROOT's header without opening the file with uproot."""
from __future__ import annotations

import struct
import uuid

import uproot

from tracerflow.events.source import file_identity, root_uuid


def test_the_header_uuid_is_the_one_uproot_reads(shared_data):
    for path in sorted(shared_data.glob("*.root")):
        with uproot.open(path) as f:
            expected = str(f.file.uuid)
        assert root_uuid(path.read_bytes()[:4096]) == expected
        assert file_identity(path)["uuid"] == expected


def test_a_large_file_header_keeps_its_uuid_further_on():
    value = uuid.uuid4()
    big = struct.Struct(">4siiqqiiiBiqiH16s").pack(b"root", 1_062_206, 100, 1 << 33, 1 << 33, 10, 1, 60, 8, 101,
                                                   1 << 32, 500, 1, value.bytes)
    small = struct.Struct(">4siiiiiiiBiiiH16s").pack(b"root", 62_206, 100, 5000, 4000, 10, 1, 60, 4, 101, 3000, 500,
                                                     1, value.bytes)
    assert root_uuid(big) == root_uuid(small) == str(value)
    assert root_uuid(b"PK\x03\x04 not root") is None and root_uuid(b"root") is None
