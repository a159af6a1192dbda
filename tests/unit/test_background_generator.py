"""BackgroundGenerator (lib/background/generator.py): Belle II's interface and seed rule, payloads
from the conditions store or a checkpoint file refused by name when they do not fit, and digits
that are bitwise the same whatever the batch size, chunking, order or thread count."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from tracerflow.background.conditions import ConditionsStore, PayloadError
from tracerflow.background.generator import BackgroundGenerator, payload_name, seed_from_framework
from tracerflow.background.models import build_model
from tracerflow.hashing import event_hashes

HASHES = event_hashes("bkg", "f.root", "events", np.arange(24))


def _store(tmp_path, name="conditioned", geometry="default", seed=3):
    torch.manual_seed(seed)
    model = build_model(name, geometry)
    with torch.no_grad():  # untrained weights, shaken so that every event differs
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    store = ConditionsStore(tmp_path / "store")
    store.put("tag", payload_name(name), model.state_dict(), {"model": model.config()})
    return store, model


def test_the_seed_rule_is_belle_iis():
    expected = int.from_bytes(hashlib.sha512(b"42").digest()[:8], "big", signed=True)
    assert seed_from_framework(42) == expected
    assert BackgroundGenerator(framework_seed=42).seed == expected and BackgroundGenerator(seed=5).seed == 5


@pytest.mark.parametrize("name", ["conditioned", "convnet"])
def test_digits_do_not_depend_on_batch_size_order_or_threads(tmp_path, name):
    store, _ = _store(tmp_path, name)
    gen = BackgroundGenerator(name, store=store, globaltag="tag", framework_seed=1)
    gen.initialize()
    whole = gen.events(HASHES, batch_size=64)
    assert len(whole["charge"]) > 0
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        small = gen.events(HASHES, batch_size=5)
    finally:
        torch.set_num_threads(threads)
    for key in whole:
        assert np.array_equal(whole[key], small[key]), key
    picked = [17, 2, 9]
    alone = gen.events(HASHES[picked], batch_size=2)
    for i, event in enumerate(picked):
        mine = {k: v[alone["event"] == i] for k, v in alone.items() if k != "event"}
        theirs = {k: v[whole["event"] == event] for k, v in whole.items() if k != "event"}
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    one = gen.event(int(HASHES[9]))
    assert set(one) == {"sensor", "ucell", "vcell", "charge"} and np.array_equal(one["charge"], theirs["charge"])
    other = BackgroundGenerator(name, store=store, globaltag="tag", framework_seed=2)
    other.initialize()
    assert not np.array_equal(other.events(HASHES[:4])["charge"], gen.events(HASHES[:4])["charge"])


def test_event_without_a_hash_counts_its_own_events(tmp_path):
    store, _ = _store(tmp_path)
    a, b = (BackgroundGenerator("conditioned", store=store, globaltag="tag", framework_seed=7) for _ in range(2))
    a.initialize(), b.initialize()
    first, second = a.event(), a.event()
    assert np.array_equal(b.event()["charge"], first["charge"])
    assert not np.array_equal(first["charge"], second["charge"])


def test_a_checkpoint_file_loads_and_a_wrong_one_is_refused_by_name(tmp_path):
    _, model = _store(tmp_path, "resnet")
    path = tmp_path / "resnet.pt"
    torch.save(model.state_dict(), path)
    gen = BackgroundGenerator("resnet", checkpoint=path, framework_seed=1)
    gen.initialize()
    assert gen.geometry.n_sensors == 10 and gen.payload is None
    with pytest.raises(PayloadError, match="checkpoint .*resnet.pt.* does not fit ConvNet"):
        BackgroundGenerator("convnet", checkpoint=path).initialize()
    with pytest.raises(PayloadError, match="no such file"):
        BackgroundGenerator("convnet", checkpoint=tmp_path / "none.pt").initialize()


def test_a_payload_for_another_model_geometry_or_tag_is_refused_by_name(tmp_path):
    store, _ = _store(tmp_path)
    with pytest.raises(PayloadError, match="trained for geometry"):
        BackgroundGenerator("conditioned", store=store, globaltag="tag", geometry="belle2").initialize()
    with pytest.raises(PayloadError, match="other"):
        BackgroundGenerator("conditioned", store=store, globaltag="other").initialize()
    with pytest.raises(PayloadError, match="BackgroundGenerator_convnet"):
        BackgroundGenerator("convnet", store=store, globaltag="tag").initialize()
    payload = next((tmp_path / "store").rglob("*.pt"))
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    with pytest.raises(PayloadError, match="checksum"):
        BackgroundGenerator("conditioned", store=store, globaltag="tag").initialize()
    with pytest.raises(RuntimeError, match="initialize"):
        BackgroundGenerator().events(HASHES[:1])


def test_a_generators_threads_are_released_for_what_runs_next_and_a_refused_payload_sets_none(tmp_path):
    from tracerflow.background import generator as module

    store, _ = _store(tmp_path)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    try:
        module.release_threads()  # whatever an earlier test left in force
        torch.set_num_threads(other)  # the process's own count, as a task finds it
        with pytest.raises(PayloadError):
            BackgroundGenerator("resnet", globaltag="tag", store=store, nintra=3).initialize()  # no such payload
        assert torch.get_num_threads() == other
        BackgroundGenerator("conditioned", globaltag="tag", store=store, nintra=3).initialize()
        assert torch.get_num_threads() == 3
        module.release_threads()
        assert torch.get_num_threads() == other
        module.release_threads()  # nothing in force: nothing changes
        assert torch.get_num_threads() == other
    finally:
        module.release_threads()
        torch.set_num_threads(before)
