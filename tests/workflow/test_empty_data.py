"""Nothing to learn from stops at Resample, naming the split, before any training."""
from __future__ import annotations

import pytest
import yaml

from .helpers import tracerflow


@pytest.mark.slow
def test_a_selection_that_passes_nothing_stops_resample_by_name(tmp_path, shared_data):
    config = {"project": {"name": "empty", "output_dir": "out"},
              "samples": {"zmumu": {"files": [str(shared_data / "uproot-Zmumu.root")], "label": "z"},
                          "hzz": {"files": [str(shared_data / "uproot-HZZ.root")], "label": "h",
                                  "event": {"template": {"leaves": {"mass": "EventWeight"}}}}},
              "event": {"template": {"leaves": {"mass": "M"}}},
              "selection": {"template": {"level": "event", "cuts": {"heavy": "mass > 1e9"}, "outputs": {"m": "mass"}}},
              "resample": {"classes": ["z", "h"], "method": "countup", "variables": {"m": [[0, 1e10, 1]]},
                           "splits": {"train": 0.8, "test": 0.2}},
              "write": {"jets": {"variables": ["m"]}, "n_folds": 2, "format": "umami"},
              "train": {"model": {"tail": {"objective": "binary"}, "set": None}, "epochs": 1}}
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = tracerflow("run", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "resample split 'train': no labelled rows" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "empty" / "train").exists()
