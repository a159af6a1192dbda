"""``tracerflow validate`` prints a config that validates again to the same normalised config."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tracerflow.config import load_config
from tracerflow.config.schema import BLOCKS
from tracerflow.config.spec import REQUIRED, ConfigError, Context

HZZ = {
    "project": {"name": "hzz", "output_dir": "out"},
    "samples": {"hzz": {"files": [], "tree": "events"}},
    "event": {"template": {
        "leaves": {"weight": "EventWeight"},
        "collections": {
            "jets": {"branches": {"px": "Jet_Px", "py": "Jet_Py", "pz": "Jet_Pz", "e": "Jet_E"}, "four_vector": "pxpypze"},
            "muons": {"branches": {"px": "Muon_Px", "py": "Muon_Py", "pz": "Muon_Pz", "e": "Muon_E",
                                   "charge": "Muon_Charge"}, "four_vector": "pxpypze", "kinematics": ["pt", "eta"]},
        },
        "derived": {"ht": "sum(jets.pt)"},
    }, "entry_list": [0, 1, 2, 5]},
    "graph": {"template": {"nodes": "jets", "topology": {"type": "delta_r", "max_dr": 2.0},
                           "node_features": {"pt": "jets.pt"}}},
    "selection": {"template": {"cuts": {"two_muons": "count(muons) >= 2"}, "outputs": {"ht": "ht"}}},
}


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("tracerflow"))
    return subprocess.run([exe, "validate", *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))


def _round_trip(tmp_path: Path, *args: str) -> tuple[dict, dict]:
    """The normalised config of ``validate ARGS`` and that of validating what it printed."""
    first = _validate(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    printed = tmp_path / "printed.yaml"
    printed.write_text(first.stdout)
    second = _validate("--config", str(printed), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    return yaml.safe_load(first.stdout), load_config(printed).as_dict()


def test_embedded_default_round_trips(tmp_path):
    printed, again = _round_trip(tmp_path)
    assert again == printed == load_config(None).as_dict()


def test_config_reading_a_real_file_round_trips(tmp_path, shared_data):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hzz.root").symlink_to(shared_data / "uproot-HZZ.root")
    config = copy.deepcopy(HZZ)
    config["samples"]["hzz"]["files"] = ["data/*.root"]
    path = tmp_path / "analysis.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    printed, again = _round_trip(tmp_path, "--config", str(path))
    assert printed["samples"]["hzz"]["files"] == [str((tmp_path / "data" / "hzz.root").resolve())]
    assert again == printed == load_config(path).as_dict()
    assert again["event"]["entry_list"] == [0, 1, 2, 5] and again["event"]["run_event_list"] is None


def _specs(spec, path=""):
    """Every spec below ``spec`` with its dotted path (items of lists and maps as ``[]``)."""
    yield path, spec
    for key, sub in (getattr(spec, "fields", None) or {}).items():
        yield from _specs(sub, f"{path}.{key}" if path else key)
    for attr in ("item", "value", "block"):
        sub = getattr(spec, attr, None)
        if sub is not None and hasattr(sub, "validate"):
            yield from _specs(sub, f"{path}[]")
    for option in getattr(spec, "options", None) or ():
        yield from _specs(option, path)


def test_every_default_validates_to_itself():
    ctx = Context("<schema>")
    checked = 0
    for path, spec in _specs(BLOCKS):
        if spec.default is REQUIRED:
            continue
        try:
            default = spec.default_value(path, ctx)
        except ConfigError:  # a block with required keys (the top level: samples)
            continue
        assert spec.validate(copy.deepcopy(default), path, ctx) == default, path
        checked += 1
    assert checked > 50
