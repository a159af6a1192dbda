"""``tracerflow validate`` refuses templates that cannot meet, naming the key, before anything runs."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tracerflow.workflows import cli

from .helpers import config_error, tracerflow
from .test_real_files import HZZ as REAL_HZZ

HZZ = {
    "project": {"name": "hzz", "output_dir": "out"},
    "samples": {"hzz": {"files": [], "tree": "events"}},
    "event": {"template": {
        "leaves": {"weight": "EventWeight", "met_px": "MET_px", "met_py": "MET_py"},
        "collections": copy.deepcopy(REAL_HZZ["event"]["template"]["collections"]),
        "derived": copy.deepcopy(REAL_HZZ["event"]["template"]["derived"]),
    }},
    "graph": {"template": {"level": "event", "nodes": "jets", "topology": {"type": "delta_r", "max_dr": 2.0},
                           "node_features": {"pt": "jets.pt", "btag": "jets.btag"},
                           "edge_features": {"dr": "delta_r(src.eta, src.phi, dst.eta, dst.phi)"},
                           "graph_features": {"n_muons": "count(muons)", "met": "met"}}},
    "selection": {"template": {"level": "event",
                               "cuts": {"two_muons": "count(muons) >= 2",
                                        "opposite": "at(muons.charge, 0) * at(muons.charge, 1) < 0"},
                               "outputs": {"lead_pt": "at(jets.pt, 0)", "n_muons": "count(muons)",
                                           "charge": "at(muons.charge, 0)", "n_jets": "count(jets)"},
                               "weight": "weight"}},
}


def _validate(tmp_path: Path, shared_data: Path, config: dict, capsys) -> tuple[int, str, str]:
    """``tracerflow validate --config`` on ``config`` reading the HZZ file: exit code, key, message."""
    config = copy.deepcopy(config)
    for sample in config["samples"].values():
        sample["files"] = [str(shared_data / "uproot-HZZ.root")]
    path = tmp_path / f"x{len(list(tmp_path.glob('x*.yaml')))}.yaml"  # a new name: configs are cached by path
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    code = cli.main(["validate", "--config", str(path)])
    if code == 0:
        return 0, "", ""
    assert code == 2
    return code, *config_error(capsys.readouterr().err, str(path))


def _changed(**changes) -> dict:
    """HZZ with ``block.key.key=value`` changes (keys joined by dots)."""
    config = copy.deepcopy(HZZ)
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def test_the_base_config_is_valid(tmp_path, shared_data, capsys):
    assert _validate(tmp_path, shared_data, HZZ, capsys)[0] == 0


def test_graph_nodes_not_below_the_graph_level(tmp_path, shared_data, capsys):
    # one graph per muon whose nodes are the event's jets: jets hang off the event, beside muons
    config = _changed(graph__template__level="muons")
    config["graph"]["template"]["graph_features"] = {}
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "graph.template.nodes"
    assert "'jets'" in message and "'muons'" in message


def test_reduction_over_a_sibling_collection(tmp_path, shared_data, capsys):
    # at the jets level, count(muons): muons hang off the event, so they are no jet's children
    config = _changed(selection__template__level="jets",
                      selection__template__cuts={"has_muons": "count(muons) >= 1"},
                      selection__template__outputs={"pt": "jets.pt"})
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "selection.template.cuts.has_muons"
    assert "count()" in message and "'muons'" in message and "'jets'" in message


@pytest.mark.parametrize("where,expression,key", [
    ("selection__template__outputs", {"lead_pt": "at(jets.ptt, 0)"}, "selection.template.outputs.lead_pt"),
    ("graph__template__node_features", {"pt": "jets.pt", "x": "jets.btg"}, "graph.template.node_features.x"),
    ("graph__template__graph_features", {"m": "count(electrons)"}, "graph.template.graph_features.m"),
    ("event__template__derived", {"met": "hypot(met_px, met_pyy)"}, "event.template.derived.met"),
])
def test_expression_naming_an_undeclared_field(tmp_path, shared_data, where, expression, key, capsys):
    config = _changed(**{where: expression})
    code, named, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and named == key
    assert "declares no" in message or "has no collection" in message


def test_float_label_against_integer_classes(tmp_path, shared_data, capsys):
    resample = {"label": "charge", "classes": {"plus": 1, "minus": -1},
                "variables": {"lead_pt": [[0, 200, 10]]}}
    config = _changed(resample=resample)
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "resample.label"
    assert "float" in message and "at(muons.charge, 0)" in message
    # an integer-valued output (a count) is a fine label for the same classes
    config["resample"] = {**resample, "label": "n_muons", "classes": {"two": 2, "three": 3}}
    assert _validate(tmp_path, shared_data, config, capsys)[0] == 0


def test_toy_default_with_a_python_event_template_is_checked_too(tmp_path):
    assert tracerflow("validate", cwd=tmp_path).returncode == 0
    override = "selection.template.outputs.x=tracks.pt"
    proc = tracerflow("validate", "--set", override, cwd=tmp_path)
    assert proc.returncode == 2
    key, message = config_error(proc.stderr, f"<embedded default> (with --set {override})")
    assert key == "selection.template.outputs.x" and "'tracks'" in message and "reduce" in message


def test_fields_must_exist_in_every_sample_event_template(tmp_path, shared_data, capsys):
    config = copy.deepcopy(HZZ)
    own = copy.deepcopy(HZZ["event"]["template"])
    del own["collections"]["jets"]["branches"]["btag"]
    config["samples"]["other"] = {"tree": "events", "event": {"template": own}}
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "graph.template.node_features.btag"
    assert "samples.other.event.template" in message and "'btag'" in message


def test_generator_weight_is_an_event_field_when_configured(tmp_path, shared_data, capsys):
    config = _changed(selection__template__weight="generator_weight")
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "selection.template.weight" and "'generator_weight'" in message
    config["event"]["generator_weight"] = "weight * 2"
    assert _validate(tmp_path, shared_data, config, capsys)[0] == 0
    config["event"]["generator_weight"] = "weight * jets.pt"
    code, key, message = _validate(tmp_path, shared_data, config, capsys)
    assert code == 2 and key == "event.generator_weight" and "reduce" in message


def test_until_a_stage_whose_block_is_missing(tmp_path, shared_data, capsys):
    path = tmp_path / "hzz.yaml"
    config = copy.deepcopy(HZZ)
    config["samples"]["hzz"]["files"] = [str(shared_data / "uproot-HZZ.root")]
    path.write_text(yaml.safe_dump(config))
    for command in ("run", "show"):
        assert cli.main([command, "--config", str(path), "--until", "Resample"]) == 2
        key, message = config_error(capsys.readouterr().err, str(path))
        assert key == "resample" and "Resample" in message
    assert not (tmp_path / "out").exists()
