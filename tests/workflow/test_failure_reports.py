"""A failed task is reported in one block (task, message, hint); its traceback goes to the log file
(``<output_dir>/logs/<project>.log``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tracerflow.config import load_config
from tracerflow.events.source import SourceError
from tracerflow.workflows.reporting import is_user_error, message_of

from .helpers import tracerflow

MISSING_BRANCH = """\
project: {{name: hzz, output_dir: out}}
samples:
  hzz: {{files: ["{file}"]}}
event:
  template:
    leaves: {{weight: EventWeight, met: MET_pxx}}
    collections:
      jets: {{branches: {{px: Jet_Px, py: Jet_Py, pz: Jet_Pz, e: Jet_E}}, four_vector: pxpypze}}
graph:
  template: {{nodes: jets, node_features: {{pt: jets.pt}}}}
selection:
  template: {{cuts: {{one_jet: count(jets) >= 1}}}}
"""


def _blocks(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tracerflow: ") and line.endswith(" failed")]


@pytest.fixture
def missing_branch(tmp_path, shared_data) -> Path:
    config = tmp_path / "analysis.yaml"
    config.write_text(MISSING_BRANCH.format(file=shared_data / "uproot-HZZ.root"))
    return config


def test_missing_branch_is_one_block_without_traceback(tmp_path, missing_branch):
    proc = tracerflow("run", "--config", str(missing_branch), cwd=tmp_path)
    assert proc.returncode == 1
    assert _blocks(proc.stderr) == ["tracerflow: BuildEvents(sample=hzz, file=uproot-HZZ.root) failed"]
    block = proc.stderr[proc.stderr.index("tracerflow: BuildEvents"):]
    assert "'MET_pxx'" in block and "uproot-HZZ.root: tree 'events'" in block and "hint:" in block
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    log = tmp_path / "out" / "logs" / "hzz.log"
    assert str(log) in proc.stderr
    text = log.read_text()
    assert "Traceback" in text and "SourceError" in text and "MET_pxx" in text


def test_verbose_shows_the_traceback_once_with_parallel_workers(tmp_path, missing_branch):
    proc = tracerflow("run", "-v", "--workers", "2", "--config", str(missing_branch), cwd=tmp_path)
    assert proc.returncode == 1
    assert len(_blocks(proc.stderr)) == 1
    assert proc.stderr.count("Traceback") == 1 and "MET_pxx" in proc.stderr


def test_user_errors_are_ours_and_name_a_file():
    assert is_user_error(SourceError("x.root: no tree 't'"))
    with pytest.raises(KeyError) as ours:
        load_config(None).sample_file("ttbar", "missing.root")
    assert is_user_error(ours.value) and message_of(ours.value).endswith("'missing.root'")
    with pytest.raises(KeyError) as theirs:
        {}["somewhere/file.h5"]
    assert not is_user_error(theirs.value)  # raised outside tracerflow: a bug, shown with its traceback
    assert not is_user_error(ZeroDivisionError())
