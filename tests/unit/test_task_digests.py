"""Task digests follow every input a task reads: a change upstream makes the downstream targets stale."""
from __future__ import annotations

import pytest

from tracerflow.tasks.convert_tfrecords import ConvertTFRecords
from tracerflow.tasks.resample import Resample
from tracerflow.tasks.write_train_sample import WriteTrainSample

GRAPH_CHANGE = "graph.template.topology.k=4"


@pytest.mark.parametrize("task", [Resample, WriteTrainSample, ConvertTFRecords])
def test_a_graph_config_change_reaches_the_tasks_that_carry_graph_nodes(task):
    """Resample gathers the graph nodes, so it and everything after it must rerun when the graphs change."""
    before = task(split="train").digest()
    assert task(split="train", overrides=(GRAPH_CHANGE,)).digest() != before
    assert task(split="train", overrides=("project.seed=43",)).digest() != before


def test_a_train_setting_does_not_reach_resample():
    assert Resample(split="train", overrides=("train.epochs=3",)).digest() == Resample(split="train").digest()


def _plain_digest(cfg, keys, upstream=(), extra=None):
    """What Config.digest hashes, written out in one piece: canonical JSON of the whole payload."""
    import hashlib

    from tracerflow.config.load import _strip_performance
    from tracerflow.io.provenance import canonical

    payload = {key: _strip_performance(cfg.get(key)) for key in keys}
    payload["__upstream__"] = list(upstream)
    payload["__extra__"] = _strip_performance(extra)
    return hashlib.blake2b(canonical(payload).encode(), digest_size=8).hexdigest()


@pytest.mark.parametrize("extra", [
    None,
    [3, {"b": 1, "a": (2, 3)}],
    {"file": "ttbar_0001.root", "input": {"size": 36_000, "uuid": None, "ends": "ab"}, "fold": 2},
    {"z": {10: "ten", 5: "five"}, "é": 1.5, "chunk_size": 7, "nested": {"chunk_size": 1, "keep": [1, 2]}},
    {5: "int keys at the top", 3: "of extra"},
])
def test_a_digest_put_together_from_parts_is_the_digest_of_the_whole_payload(extra):
    """Config.digest serialises each config slice and each Fragment once; the digest must stay the
    hash of the plain payload, or every cache and provenance record made before would go stale."""
    from tracerflow.config.load import Fragment, load_config

    cfg = load_config(None, ("event.chunk_size=1234",))
    keys = ("project.seed", "graph", "samples.ttbar.tree", "event")
    assert cfg.digest(*keys, upstream=["aa", "bb"], extra=extra) == _plain_digest(cfg, keys, ["aa", "bb"], extra)
    # twice: the second time from the kept texts
    assert cfg.digest(*keys, upstream=["aa"], extra=extra) == _plain_digest(cfg, keys, ["aa"], extra)
    event = cfg.block_for("event", "ttbar")
    with_fragment = {"file": "f.root", "event": cfg.block_fragment("event", "ttbar"), "input": extra}
    plain = {"file": "f.root", "event": event, "input": extra}
    assert cfg.digest("samples.ttbar.tree", extra=with_fragment) == _plain_digest(cfg, ["samples.ttbar.tree"], (), plain)
    assert cfg.digest(extra=Fragment(plain)) == _plain_digest(cfg, [], (), plain)
