"""The conditions store of the background generator: payloads keyed by global tag, name and revision,
checked against their sha256 before they load, byte-identical when built the same way, and refused
with the tag, the name and what is wrong."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tracerflow.background.conditions import (
    INDEX_LAYOUT, INDEX_VERSION, ConditionsStore, PayloadError, load_into, shipped_store,
)


def linear(seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build(root: Path) -> ConditionsStore:
    """A small store: two revisions of one payload, one of another, a second global tag, and a state
    dict of views sharing one storage (what torch.save would write with the whole storage)."""
    store = ConditionsStore(root)
    geometry = {"layers": [4, 6], "height": 32, "width": 96}
    store.put("main_2026", "convnet", linear(0).state_dict(), {"geometry": geometry})
    store.put("main_2026", "convnet", linear(1).state_dict(), {"epochs": 3})
    store.put("main_2026", "resnet", linear(2).state_dict(), {})
    base = torch.arange(24.0).reshape(4, 6)
    store.put("dev", "conditioned", {"a": base[:, 1:3], "b": base.t(), "c": base}, {"note": "views"})
    return store


def test_round_trip_revisions_newest_by_default_and_metadata(tmp_path):
    store = ConditionsStore(tmp_path / "store")
    first, second = linear(0), linear(1)
    assert store.put("main", "convnet", first.state_dict(), {"geometry": {"layers": [4, 6]}, "lr": 1e-3}) == 1
    assert store.put("main", "convnet", second.state_dict(), {"lr": 5e-4}) == 2
    assert store.put("main", "resnet", first.state_dict(), None) == 1
    assert store.globaltags() == ["main"]
    assert store.names("main") == ["convnet", "resnet"]
    assert store.revisions("main", "convnet") == [1, 2]

    newest = store.get("main", "convnet")
    assert (newest.globaltag, newest.name, newest.revision) == ("main", "convnet", 2)
    assert newest.metadata == {"lr": 5e-4}
    assert list(newest.state_dict) == ["weight", "bias"]
    for key, value in second.state_dict().items():
        assert torch.equal(newest.state_dict[key], value)
    assert newest.path == tmp_path / "store" / "main" / "convnet" / "r0002.pt"
    assert newest.sha256 == hashlib.sha256(newest.path.read_bytes()).hexdigest()

    old = store.get("main", "convnet", 1)
    assert old.metadata == {"geometry": {"layers": [4, 6]}, "lr": 1e-3}
    assert all(torch.equal(old.state_dict[k], v) for k, v in first.state_dict().items())
    assert store.get("main", "resnet").metadata == {}

    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert (index["layout"], index["version"]) == (INDEX_LAYOUT, INDEX_VERSION)
    entry = index["payloads"]["main"]["convnet"][1]
    assert entry["file"] == "main/convnet/r0002.pt" and entry["size"] == newest.path.stat().st_size
    # written with sorted keys, indent 1 and a trailing newline
    assert (tmp_path / "store" / "index.json").read_text() == json.dumps(index, sort_keys=True, indent=1) + "\n"
    # nothing but the index and the payloads: no temporary or lock files left behind
    assert sorted(files_of(tmp_path / "store")) == ["index.json", "main/convnet/r0001.pt", "main/convnet/r0002.pt",
                                                    "main/resnet/r0001.pt"]


def test_views_load_as_their_values(tmp_path):
    payload = build(tmp_path / "s").get("dev", "conditioned")
    base = torch.arange(24.0).reshape(4, 6)
    assert torch.equal(payload.state_dict["a"], base[:, 1:3])
    assert torch.equal(payload.state_dict["b"], base.t())
    assert payload.state_dict["a"].untyped_storage().nbytes() == 8 * 4  # only the view's values were saved


BUILD_IN_A_FRESH_PROCESS = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_background_conditions import build
build(Path(sys.argv[1]))
"""


def test_two_identical_builds_are_byte_identical(tmp_path):
    build(tmp_path / "a")
    build(tmp_path / "b")
    # and one more in another process with another string hash seed
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", BUILD_IN_A_FRESH_PROCESS, str(tmp_path / "c"),
                           str(Path(__file__).parent)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    a, b, c = (files_of(tmp_path / name) for name in "abc")
    assert sorted(a) == ["dev/conditioned/r0001.pt", "index.json", "main_2026/convnet/r0001.pt",
                         "main_2026/convnet/r0002.pt", "main_2026/resnet/r0001.pt"]
    assert a == b == c


def test_a_corrupted_payload_is_refused_by_its_checksum(tmp_path):
    store = build(tmp_path / "s")
    path = tmp_path / "s" / "main_2026" / "convnet" / "r0002.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PayloadError) as err:
        store.get("main_2026", "convnet")
    message = str(err.value)
    for part in ("'convnet'", "'main_2026'", "revision 2", "checksum", str(path), "corrupted or replaced",
                 hashlib.sha256(bytes(data)).hexdigest()):
        assert part in message
    assert store.get("main_2026", "convnet", 1).revision == 1  # the other revision still reads


def test_a_truncated_payload_is_refused_by_its_size(tmp_path):
    store = build(tmp_path / "s")
    path = tmp_path / "s" / "main_2026" / "resnet" / "r0001.pt"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PayloadError, match=rf"'resnet' \(global tag 'main_2026', revision 1\).*{size - 10} bytes "
                                           rf"where the index records {size}: corrupted or replaced"):
        store.get("main_2026", "resnet")


def test_a_missing_payload_file_is_named(tmp_path):
    store = build(tmp_path / "s")
    path = tmp_path / "s" / "main_2026" / "convnet" / "r0001.pt"
    path.unlink()
    with pytest.raises(PayloadError) as err:
        store.get("main_2026", "convnet", 1)
    assert "'convnet'" in str(err.value) and "'main_2026'" in str(err.value) and "revision 1" in str(err.value)
    assert f"its file {path} is missing" in str(err.value)


def test_unknown_tag_name_and_revision_list_what_exists(tmp_path):
    store = build(tmp_path / "s")
    with pytest.raises(PayloadError, match=r"'convnet' \(global tag 'main_2025'\) in conditions store .*: no such "
                                           r"global tag \(global tags: dev, main_2026\)"):
        store.get("main_2025", "convnet")
    with pytest.raises(PayloadError, match=r"'gan' \(global tag 'main_2026'\).*no payload of that name in the global "
                                           r"tag \(its payloads: convnet, resnet\)"):
        store.get("main_2026", "gan")
    with pytest.raises(PayloadError, match=r"'convnet' \(global tag 'main_2026', revision 3\).*no such revision "
                                           r"\(revisions: 1, 2\)"):
        store.get("main_2026", "convnet", 3)
    with pytest.raises(PayloadError, match=r"no such global tag \(global tags: dev, main_2026\)"):
        store.revisions("nope", "convnet")
    empty = ConditionsStore(tmp_path / "nothing")
    assert empty.globaltags() == []
    with pytest.raises(PayloadError, match=r"no such global tag \(the store has no index .*nothing/index.json\)"):
        empty.get("main", "convnet")


@pytest.mark.parametrize("tag, name", [("", "convnet"), ("main", ""), ("a/b", "convnet"), ("main", "../x"),
                                       ("..", "convnet"), ("main", "a..b"), (".hidden", "convnet"),
                                       ("main", "with space"), (None, "convnet")])
def test_invalid_tags_and_names_are_refused(tmp_path, tag, name):
    store = ConditionsStore(tmp_path / "s")
    with pytest.raises(ValueError, match=r"conditions (global tag|payload name)"):
        store.put(tag, name, linear(0).state_dict(), {})
    assert not (tmp_path / "s").exists()


def test_what_is_not_a_state_dict_or_json_metadata_is_refused(tmp_path):
    store = ConditionsStore(tmp_path / "s")
    with pytest.raises(ValueError, match=r"payload 'convnet' for global tag 'main': state dict entry 'scale' is a "
                                         r"float, not a tensor"):
        store.put("main", "convnet", {"weight": torch.ones(2), "scale": 1.5}, {})
    with pytest.raises(ValueError, match=r"payload 'convnet' for global tag 'main': metadata is not JSON"):
        store.put("main", "convnet", linear(0).state_dict(), {"path": Path("/x")})
    with pytest.raises(ValueError, match=r"metadata is not JSON"):
        store.put("main", "convnet", linear(0).state_dict(), {"loss": float("nan")})
    assert not (tmp_path / "s").exists()


class NotAWeight:
    """A class torch.load(weights_only=True) does not unpickle."""


def test_a_payload_that_does_not_load_weights_only_is_refused_on_one_line(tmp_path):
    store = build(tmp_path / "s")
    path = tmp_path / "s" / "main_2026" / "resnet" / "r0001.pt"
    with open(path, "wb") as f:
        torch.save({"weight": torch.ones(2), "extra": NotAWeight()}, f)
    # the index made to agree, as if someone replaced the file and its entry
    index_path = tmp_path / "s" / "index.json"
    index = json.loads(index_path.read_text())
    data = path.read_bytes()
    index["payloads"]["main_2026"]["resnet"][0].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    index_path.write_text(json.dumps(index, sort_keys=True, indent=1) + "\n")
    with pytest.raises(PayloadError) as err:
        store.get("main_2026", "resnet")
    message = str(err.value)
    assert "\n" not in message
    assert "'resnet' (global tag 'main_2026', revision 1)" in message
    assert "does not load with torch.load(weights_only=True)" in message and "NotAWeight" in message


def test_an_unreadable_index_is_named(tmp_path):
    store = build(tmp_path / "s")
    index_path = tmp_path / "s" / "index.json"
    text = index_path.read_text()
    index_path.write_text(text[:-20])
    with pytest.raises(PayloadError, match=rf"conditions store index {index_path} is not valid JSON"):
        store.get("main_2026", "convnet")
    index_path.write_text(text.replace('"version": 1', '"version": 2'))
    with pytest.raises(PayloadError, match=rf"conditions store index {index_path} has layout "
                                           r"'tracerflow.conditions' version 2; this tracerflow reads layout "
                                           r"'tracerflow.conditions' version 1"):
        store.globaltags()
    index_path.write_text(text.replace('"main_2026/convnet/r0001.pt"', '"../../etc/r0001.pt"'))
    with pytest.raises(PayloadError, match=r"payloads\['main_2026'\]\['convnet'\]\[0\]\['file'\] is "
                                           r"'../../etc/r0001.pt', expected 'main_2026/convnet/r0001.pt'"):
        store.get("main_2026", "convnet", 1)


def test_load_into_is_strict_names_the_offending_keys_and_leaves_the_model(tmp_path):
    store = ConditionsStore(tmp_path / "s")
    store.put("main", "convnet", linear(0).state_dict(), {})
    payload = store.get("main", "convnet")

    model = linear(7)
    assert load_into(model, payload) is model
    assert torch.equal(model.weight, linear(0).weight)

    wider = linear(7)
    wider.weight = torch.nn.Parameter(torch.zeros(2, 4))
    with pytest.raises(PayloadError, match=r"payload 'convnet' \(global tag 'main', revision 1\) at .*r0001.pt does "
                                           r"not fit Linear: shape mismatches: weight \(payload \[2, 3\], model "
                                           r"\[2, 4\]\)"):
        load_into(wider, payload)

    other = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PayloadError, match=r"does not fit Sequential: missing keys: 0.weight, 0.bias; unexpected "
                                           r"keys: weight, bias"):
        load_into(other, payload)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in before.items())


def test_the_shipped_store_exists_reads_and_is_read_only():
    store = shipped_store()
    assert store.read_only
    assert store.index_path.is_file()
    assert json.loads(store.index_path.read_text())["layout"] == INDEX_LAYOUT
    # empty until the default payload is trained into it; whatever it holds reads and verifies
    for tag in store.globaltags():
        for name in store.names(tag):
            assert store.get(tag, name).revision == store.revisions(tag, name)[-1]
    with pytest.raises(PermissionError, match="read-only"):
        store.put("main", "convnet", linear(0).state_dict(), {})


def test_the_package_and_listing_a_store_import_no_torch(tmp_path):
    build(tmp_path / "s")
    code = ("import sys, tracerflow.background as b; "
            f"s = b.ConditionsStore({str(tmp_path / 's')!r}); "
            "print(s.globaltags(), s.revisions('main_2026', 'convnet'), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['dev', 'main_2026'] [1, 2] False"
