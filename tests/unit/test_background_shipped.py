"""The conditions store shipped with the package (lib/background/payloads, built by
lib/background/ship.py): BackgroundGenerator() with every default loads it and generates; its index
checks out; rebuilding it gives the same bytes; a model it does not hold is refused by name."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from tracerflow.background.conditions import INDEX_NAME, ConditionsStore, PayloadError, shipped_store
from tracerflow.background.generator import DEFAULT_GLOBALTAG, DEFAULT_MODEL, BackgroundGenerator, payload_name
from tracerflow.background.ship import FRAMEWORK_SEED, SHIPPED_ROOT, build, default_block, rebuild
from tracerflow.background.train import train_settings
from tracerflow.hashing import event_hashes
from tracerflow.toy.pixels import GEOMETRIES

HASHES = event_hashes("bkg", "f.root", "events", np.arange(16))


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_defaults_are_the_clusters_model_and_the_shipped_store():
    assert DEFAULT_MODEL == default_block()["model"] == "clusters"
    assert shipped_store().root.resolve() == SHIPPED_ROOT and shipped_store().read_only


def test_a_generator_with_every_default_loads_the_shipped_payload_and_generates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh place: no project, no store but the package's
    gen = BackgroundGenerator()
    assert (gen.model_name, gen.checkpoint, gen.store, gen.globaltag) == ("clusters", None, None, DEFAULT_GLOBALTAG)
    gen.initialize()
    assert gen.payload.path.resolve().is_relative_to(SHIPPED_ROOT)
    assert (gen.payload.globaltag, gen.payload.name, gen.payload.revision) == (
        DEFAULT_GLOBALTAG, "BackgroundGenerator_clusters", 1)
    assert gen.geometry == GEOMETRIES["default"] and gen.geometry.shape == (10, 32, 96)
    digits = gen.events(HASHES)
    assert set(digits) == {"event", "sensor", "ucell", "vcell", "charge"} and len(digits["charge"]) > 0
    assert set(np.unique(digits["event"])) == set(range(len(HASHES)))  # every event has background
    assert digits["sensor"].max() < 10 and digits["ucell"].max() < 32 and digits["vcell"].max() < 96
    assert digits["charge"].min() > 0
    one = gen.event(int(HASHES[3]))
    assert np.array_equal(one["charge"], digits["charge"][digits["event"] == 3])
    again = BackgroundGenerator()
    again.initialize()
    assert all(np.array_equal(again.events(HASHES)[k], digits[k]) for k in digits)


def test_the_shipped_index_checks_out():
    root = SHIPPED_ROOT
    index = json.loads((root / INDEX_NAME).read_text())
    store = shipped_store()
    name = payload_name(DEFAULT_MODEL)
    assert store.globaltags() == [DEFAULT_GLOBALTAG] and store.names(DEFAULT_GLOBALTAG) == [name]
    assert store.revisions(DEFAULT_GLOBALTAG, name) == [1]
    (entry,) = index["payloads"][DEFAULT_GLOBALTAG][name]
    data = (root / entry["file"]).read_bytes()
    assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert set(_files(root)) == {INDEX_NAME, entry["file"]}  # nothing unindexed is shipped
    assert len(data) < 2_000_000  # the tables are small: the package carries them
    payload = store.get(DEFAULT_GLOBALTAG, name)
    assert payload.sha256 == entry["sha256"]
    # what it was made from: the default block at the default project.seed (Belle II's seed rule)
    block = default_block()
    settings = train_settings(block, FRAMEWORK_SEED)
    meta = payload.metadata
    assert meta["model"]["name"] == "clusters" and meta["model"]["geometry"] == GEOMETRIES["default"].as_dict()
    assert meta["train"]["seed"] == settings.seed and meta["fit"]["events"] == block["train"]["fit_events"]
    assert meta["physics"]["clusters_per_sensor"] == block["physics"]["clusters_per_sensor"]


@pytest.mark.slow
def test_rebuilding_the_shipped_store_gives_the_same_bytes(tmp_path):
    """~20 s: the default block's 20,000 events simulated and fitted, as TrainBackgroundGenerator does."""
    shipped = _files(SHIPPED_ROOT)
    target = tmp_path / "payloads"
    shutil.copytree(SHIPPED_ROOT, target)  # rebuilt in place of a store, as `python -m ... ship` does
    (target / "tracerflow-background" / "BackgroundGenerator_clusters" / "r0001.pt").write_bytes(b"stale")
    payload = rebuild(target)
    assert payload == target / "tracerflow-background" / "BackgroundGenerator_clusters" / "r0001.pt"
    rebuilt = _files(target)
    assert sorted(rebuilt) == sorted(shipped)
    for path in shipped:
        assert rebuilt[path] == shipped[path], f"{path} differs from the shipped one: rebuild the shipped store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payloads"]  # no build directory left behind


def test_building_into_a_store_that_holds_payloads_is_refused(tmp_path):
    target = tmp_path / "store"
    shutil.copytree(SHIPPED_ROOT, target)
    with pytest.raises(FileExistsError, match="already holds payloads"):
        build(target)


@pytest.mark.parametrize("model", ["conditioned", "convnet"])
def test_a_model_the_shipped_store_does_not_hold_is_refused_by_tag_and_name(model):
    with pytest.raises(PayloadError) as err:
        BackgroundGenerator(model).initialize()
    message = str(err.value)
    assert f"BackgroundGenerator_{model}" in message and f"global tag {DEFAULT_GLOBALTAG!r}" in message
    assert "no payload of that name" in message and "BackgroundGenerator_clusters" in message
    with pytest.raises(PermissionError, match="read-only"):
        shipped_store().put(DEFAULT_GLOBALTAG, payload_name(model), {}, {})
    assert ConditionsStore(SHIPPED_ROOT).revisions(DEFAULT_GLOBALTAG, payload_name(DEFAULT_MODEL)) == [1]
