"""An input file replaced under the same name is a new input: what depends on it reruns."""
from __future__ import annotations

import os
import shutil

import h5py
import pytest
import uproot
import yaml

from tracerflow.events.source import file_identity

from .helpers import tracerflow


def test_file_identity_follows_content_not_name_or_time(tmp_path, shared_data):
    path = tmp_path / "z.root"
    shutil.copy(shared_data / "uproot-Zmumu.root", path)
    first = file_identity(path)
    os.utime(path, ns=(1, 1))                       # touched: the same file
    assert file_identity(path) == first
    raw = uproot.open(path)["events"].arrays(["M"], library="np", entry_stop=10)
    with uproot.recreate(path) as f:                 # rewritten under the same name: another file
        f["events"] = {"M": raw["M"]}
    assert file_identity(path) != first and file_identity(tmp_path / "missing.root") is None


@pytest.mark.slow
def test_a_replaced_input_file_reruns_its_events(tmp_path, shared_data):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(shared_data / "uproot-Zmumu.root", data / "zmumu.root")
    config = {"project": {"name": "prov", "output_dir": "out"},
              "samples": {"zmumu": {"files": ["data/zmumu.root"]}},
              "event": {"template": {"leaves": {"mass": "M"}}},
              "selection": {"template": {"level": "event", "cuts": {"z": "mass > 60"}}}}
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(config))
    tracerflow("run", "--config", str(path), cwd=tmp_path, check=True)
    events = tmp_path / "out" / "prov" / "events" / "zmumu" / "zmumu.h5"
    with h5py.File(events) as f:
        assert f["index/entry"].shape == (2304,)

    raw = uproot.open(data / "zmumu.root")["events"].arrays(["M"], library="np", entry_stop=1000)
    with uproot.recreate(data / "zmumu.root") as f:
        f["events"] = {"M": raw["M"]}
    shown = tracerflow("show", "--config", str(path), cwd=tmp_path, check=True).stdout
    assert "stale: input file zmumu.root changed (ends" in shown, shown
    tracerflow("run", "--config", str(path), cwd=tmp_path, check=True)
    with h5py.File(events) as f:
        assert f["index/entry"].shape == (1000,)
