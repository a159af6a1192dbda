"""Provenance records: what a digest was made from, and what changed since."""
from __future__ import annotations

import json

from tracerflow.config import load_config
from tracerflow.io.provenance import changed_upstream, differences, read_record, record_path, summary, write_record


def _payload(cfg, *keys, upstream=(), extra=None) -> tuple[str, dict]:
    digest = cfg.digest(*keys, upstream=upstream, extra=extra)
    return digest, json.loads(cfg.payload(digest))


def test_a_digest_keeps_the_payload_it_hashed():
    cfg = load_config(None, ("train.epochs=3",))
    digest, payload = _payload(cfg, "train", upstream=["abc"], extra={"fold": 2})
    assert payload["train"]["epochs"] == 3 and payload["__upstream__"] == ["abc"]
    assert payload["__extra__"] == {"fold": 2}
    assert cfg.payload("0" * 16) is None


def test_records_are_written_once_and_read_back(tmp_path):
    cfg = load_config(None, ())
    digest, payload = _payload(cfg, "predict")
    write_record(tmp_path, digest, cfg.payload(digest))
    first = record_path(tmp_path, digest).stat().st_mtime_ns
    write_record(tmp_path, digest, cfg.payload(digest))
    assert record_path(tmp_path, digest).stat().st_mtime_ns == first
    assert read_record(tmp_path, digest) == payload
    assert read_record(tmp_path, "0" * 16) is None
    record_path(tmp_path, "1" * 16).write_text("{not json")
    assert read_record(tmp_path, "1" * 16) is None
    assert not [p for p in record_path(tmp_path, digest).parent.iterdir() if ".tmp-" in p.name]


def test_differences_name_each_changed_key_old_and_new():
    old = _payload(load_config(None, ()), "project.seed", "train")[1]
    new = _payload(load_config(None, ("train.epochs=3", "train.optimizer_params.lr=0.01")), "project.seed", "train")[1]
    lines = differences(old, new)
    assert lines[0].startswith("train.epochs: ") and lines[0].endswith(" -> 3")
    assert any(line.startswith("train.optimizer_params.lr: ") and line.endswith("-> 0.01") for line in lines), lines
    assert differences(old, old) == []


def test_a_changed_input_file_is_named_with_what_changed():
    old = {"__extra__": {"file": "a.root", "input": {"size": 10, "uuid": "u1", "ends": "x"}, "event": {"k": 1}}}
    new = {"__extra__": {"file": "a.root", "input": {"size": 12, "uuid": "u2", "ends": "y"}, "event": {"k": 2}}}
    lines = differences(old, new)
    assert lines[0] == 'input file a.root changed (ends "x" -> "y", size 10 -> 12, uuid "u1" -> "u2")'
    assert lines[1] == "event.k: 1 -> 2"
    gone = differences(old, {"__extra__": {"file": "a.root", "input": None, "event": {"k": 1}}})
    assert gone == ['input file a.root changed (ends "x" -> null, size 10 -> null, uuid "u1" -> null)']


def test_keys_that_appear_or_vanish_and_upstream_changes():
    assert differences({"a": {"b": 1}}, {"a": {"b": 1, "c": [1, 2]}}) == ["a.c: (unset) -> [1, 2]"]
    old = {"__upstream__": ["d1", "d2"]}
    assert changed_upstream(old, [("A", "d1"), ("B", "d3")]) == ["B"]
    assert summary([str(i) for i in range(6)]) == "0; 1; 2; 3; and 2 more"
