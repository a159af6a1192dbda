"""The bad-input corpus: every kind of bad input tracerflow refuses, in one place.

Config errors (exit 2, before anything runs; the message names the key):

- YAML: not YAML at all, a key given twice (top level and nested);
- unknown keys (top level, in a block, in a sample) and values of the wrong type or choice;
- names that would become paths: samples, splits, classes (list and map) and the project named
  ``/abs/escape``, ``../up`` or ``a.b``; template field names such as ``a/b``;
- ``module:Class`` templates from modules a config may not name (``this:Zen`` must not print the
  Zen of Python), in every template key; allowed: tracerflow's modules, modules below the config's
  directory and those in ``project.template_modules``;
- entry and run/event list files that are not lists (``/etc/passwd``, binary files): named with the
  line and what is wrong, never quoted;
- expressions and column names that no template declares: selection cuts, outputs and weight,
  derived fields, the generator weight, resample variables, label and weight, write variables.

Input errors at run time (exit 1; one failure block naming the file and the tree, branch or value;
no traceback), each a sample added to a config whose targets are already complete in the same
output directory, which stay byte-identical:

- a truncated ROOT file, a file that is not ROOT, a file of 0 bytes;
- an empty tree (0 entries), a missing tree, a missing branch;
- branches of the wrong type: strings or a list per event where one number is declared, one number
  where a collection's list is declared;
- NaN and infinity under ``event.non_finite: fail``; under ``drop`` and ``fill`` the run goes on.

The failing samples share one run (each fails in its own BuildEvents task, reported in its own
block), so the corpus costs three runs of the command. Finer cases live beside the code they test:
tests/unit/test_build_events.py (which entry and value a NaN is reported at, chunk boundaries,
missing run/event branches), tests/unit/test_config_input_checks.py (duplicate lines, names differing
in case) and tests/workflow/test_config_checks.py (levels and kinds of expressions).
"""
from __future__ import annotations

import copy
import hashlib
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
import yaml

from tracerflow.workflows import cli

from .helpers import config_error, tracerflow

MUONS = {"members": [{"px": "px1", "py": "py1", "pz": "pz1", "e": "E1", "charge": "Q1"},
                     {"px": "px2", "py": "py2", "pz": "pz2", "e": "E2", "charge": "Q2"}],
         "four_vector": "pxpypze"}
ZMUMU_TEMPLATE = {"leaves": {"run": "Run", "event": "Event", "mass": "M"}, "collections": {"muons": MUONS}}
GOOD = {
    "project": {"name": "corpus", "output_dir": "out"},
    "samples": {"zmumu": {"files": ["<uproot-Zmumu.root>"]}},
    "event": {"template": ZMUMU_TEMPLATE},
    "selection": {"template": {"level": "event", "cuts": {"heavy": "mass > 60"},
                               "outputs": {"mass": "mass", "lead_pt": "max(muons.pt)"}, "weight": None}},
    "resample": {"variables": {"mass": [[60, 120, 6]]}, "splits": {"train": 0.5, "test": 0.5}},
    "write": {"format": "umami", "jets": {"variables": ["mass", "lead_pt"]}, "n_folds": 2},
}
ZEN = "Beautiful is better than ugly"


def good(shared_data: Path) -> dict:
    config = copy.deepcopy(GOOD)
    config["samples"]["zmumu"]["files"] = [str(shared_data / "uproot-Zmumu.root")]
    return config


# ------------------------------------------------------------------ config errors: exit 2, before anything runs

def refused(tmp_path: Path, capsys, config: dict | str, *args: str) -> tuple[str, str]:
    """Run ``config`` (a dict, or YAML text); assert exit 2 with nothing written; the key and message."""
    path = tmp_path / "analysis.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    code = cli.main(["run", "--config", str(path), "--until", "ApplySelections", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (tmp_path / "out").exists()
    assert "Traceback" not in err
    return config_error(err, str(path))


def changed(config: dict, keys: str, value) -> dict:
    """``config`` with the key at ``keys`` (joined by '/', as keys may hold dots) set to ``value``."""
    node = config
    *parents, last = keys.split("/")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return config


def renamed_sample(config: dict, name: str) -> dict:
    config["samples"] = {name: config["samples"]["zmumu"]}
    return config


CONFIG_CASES = {
    # id: (change of the good config, key named, words of the message)
    "unknown top-level key": (lambda c: changed(c, "evnt", {}), "evnt", "did you mean 'event'"),
    "unknown key in a block": (lambda c: changed(c, "event/chunksize", 10), "event.chunksize",
                               "did you mean 'chunk_size'"),
    "unknown key in a sample": (lambda c: changed(c, "samples/zmumu/tre", "events"), "samples.zmumu.tre",
                                "did you mean 'tree'"),
    "unknown key in a template": (lambda c: changed(c, "event/template/leafs", {}), "event.template.leafs",
                                  "did you mean 'leaves'"),
    "string for an integer": (lambda c: changed(c, "event/chunk_size", "many"), "event.chunk_size", "expected int"),
    "number below its minimum": (lambda c: changed(c, "event/chunk_size", 0), "event.chunk_size", ">= 1"),
    "string for a list": (lambda c: changed(c, "samples/zmumu/files", "x.root"), "samples.zmumu.files",
                          "expected a list"),
    "bool for a number": (lambda c: changed(c, "resample/splits/train", True), "resample.splits.train",
                          "expected float"),
    "value outside the choices": (lambda c: changed(c, "event/non_finite", "skip"), "event.non_finite",
                                  "one of 'fail', 'keep', 'drop', 'fill'"),
    "number for a template": (lambda c: changed(c, "selection/template", 42), "selection.template", "expected"),
    "class path that is no class path": (lambda c: changed(c, "event/template", "my module:Event"), "event.template",
                                         "is not 'module:Class'"),
    "missing input file": (lambda c: changed(c, "samples/zmumu/files", ["nowhere.root"]), "samples.zmumu.files[0]",
                           "no such file"),
    # names that become paths
    **{f"sample named {name}": (lambda c, name=name: renamed_sample(c, name), f"samples.{name}", "not a plain name")
       for name in ("/abs/escape", "../up", "a.b")},
    **{f"split named {name}": (lambda c, name=name: changed(c, "resample/splits", {"train": 0.5, name: 0.5}),
                               f"resample.splits.{name}", "not a plain name") for name in ("/abs/escape", "../up", "a.b")},
    **{f"class named {name}": (lambda c, name=name: changed(changed(c, "resample/classes", ["z", name]),
                                                            "samples/zmumu/label", "z"),
                               "resample.classes", "not a plain name") for name in ("/abs/escape", "../up", "a.b")},
    **{f"class by label named {name}": (lambda c, name=name: changed(changed(c, "resample/classes", {"z": 0, name: 1}),
                                                                     "resample/label", "mass"),
                                        f"resample.classes.{name}", "not a plain name")
       for name in ("/abs/escape", "../up", "a.b")},
    **{f"project named {name}": (lambda c, name=name: changed(c, "project/name", name), "project.name",
                                 "not a plain name") for name in ("/abs/escape", "../up", "a.b")},
    "leaf named a/b": (lambda c: changed(c, "event/template/leaves", {**ZMUMU_TEMPLATE["leaves"], "a/b": "M"}),
                       "event.template.leaves.a/b", "is not a field name"),
    "output named ../x": (lambda c: changed(c, "selection/template/outputs", {"../x": "mass"}),
                          "selection.template.outputs.../x", "is not a field name"),
    "collection named a.b": (lambda c: changed(c, "event/template/collections", {"a.b": MUONS}),
                             "event.template.collections.a.b", "is not a field name"),
    # names no template declares
    "cut reading an undeclared field": (lambda c: changed(c, "selection/template/cuts/x", "masss > 1"),
                                        "selection.template.cuts.x", "did you mean 'mass'"),
    "output reading an undeclared field": (lambda c: changed(c, "selection/template/outputs/x", "muons.ptt"),
                                           "selection.template.outputs.x", "declares no field 'ptt' on muons"),
    "weight reading an undeclared field": (lambda c: changed(c, "selection/template/weight", "wgt"),
                                           "selection.template.weight", "declares no event field 'wgt'"),
    "derived field reading an undeclared field": (lambda c: changed(c, "event/template/derived", {"y": "mass * foo"}),
                                                  "event.template.derived.y", "'foo'"),
    "generator weight reading an undeclared field": (lambda c: changed(c, "event/generator_weight", "genWeight"),
                                                     "event.generator_weight", "'genWeight'"),
    "undeclared collection": (lambda c: changed(c, "selection/template/cuts/x", "count(jets) > 1"),
                              "selection.template.cuts.x", "no collection 'jets'"),
    "resample variable that is no output": (lambda c: changed(c, "resample/variables/ptx", [[0, 1, 1]]),
                                            "resample.variables.ptx", "is not a selection output"),
    "resample weight that is no output": (lambda c: changed(c, "resample/weight", "w"), "resample.weight",
                                          "is not a selection output"),
    "resample label that is no output": (lambda c: changed(changed(c, "resample/label", "lab"),
                                                           "resample/classes", {"a": 0, "b": 1}),
                                         "resample.label", "is not a selection output"),
    "write variable that is no output": (lambda c: changed(c, "write/jets/variables", ["mass", "eta"]),
                                         "write.jets.variables[1]", "'eta' is not a selection output"),
    "write label that is no output": (lambda c: changed(c, "write/add_labels", ["eta"]), "write.add_labels[0]",
                                      "is not a selection output"),
    "write log that is no variable": (lambda c: changed(c, "write/jets/log", ["eta"]), "write.jets.log[0]",
                                      "is not in write.jets.variables"),
}


@pytest.mark.parametrize("change, key, words", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_a_bad_config_stops_before_anything_runs(tmp_path, shared_data, capsys, change, key, words):
    named, message = refused(tmp_path, capsys, change(good(shared_data)))
    assert named == key and words in message


def test_the_good_config_is_valid(tmp_path, shared_data, capsys):
    path = tmp_path / "analysis.yaml"
    path.write_text(yaml.safe_dump(good(shared_data)))
    assert cli.main(["validate", "--config", str(path)]) == 0


@pytest.mark.parametrize("text, key, words", [
    (lambda good: "project: {name: corpus\n", "<top level>", "not valid YAML"),
    (lambda good: good + "project: {name: again}\n", "project", "given twice (lines 1 and"),
    (lambda good: good.replace("  zmumu:\n", "  zmumu:\n    files: [a.root]\n"), "samples.zmumu.files",
     "given twice"),
], ids=["not YAML", "top-level key twice", "nested key twice"])
def test_yaml_that_is_not_one_config(tmp_path, shared_data, capsys, text, key, words):
    named, message = refused(tmp_path, capsys, text(yaml.safe_dump(good(shared_data), sort_keys=False)))
    assert named == key and words in message


# ------------------------------------------------------------------ templates from modules a config may name

SIDE_EFFECT = '''\
from pathlib import Path
Path({marker!r}).write_text("imported")
from tracerflow.templates.event import Collection, EventTemplate


class Event(EventTemplate):
    leaves = {{"run": "Run", "event": "Event", "mass": "M"}}
    collections = {{"muons": Collection(members=({{"px": "px1", "py": "py1", "pz": "pz1", "e": "E1", "charge": "Q1"}},
                                                 {{"px": "px2", "py": "py2", "pz": "pz2", "e": "E2", "charge": "Q2"}}),
                                        four_vector="pxpypze")}}
'''


def module_file(path: Path, marker: Path) -> Path:
    """A module holding an event template of the Zmumu file that writes ``marker`` when imported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SIDE_EFFECT.format(marker=str(marker)))
    return path


def test_this_zen_is_refused_without_importing_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    imported_before = "this" in sys.modules
    capsys.readouterr()
    assert cli.main(["validate", "--set", "event.template=this:Zen"]) == 2
    out, err = capsys.readouterr()
    key, message = config_error(err, "<embedded default> (with --set event.template=this:Zen)")
    assert key == "event.template" and "'this'" in message and "project.template_modules" in message
    assert ZEN not in out and ZEN not in err
    if not imported_before:
        assert "this" not in sys.modules


@pytest.mark.parametrize("key", ["event/template", "samples/zmumu/event/template", "selection/template",
                                 "graph/template"])
def test_a_module_outside_the_allowed_ones_is_never_imported(tmp_path, shared_data, capsys, monkeypatch, key):
    name = f"corpus_elsewhere_{key.replace('/', '_')}"
    marker = tmp_path / "imported.txt"
    module_file(tmp_path / "elsewhere" / f"{name}.py", marker)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # importable, but not the config's to name
    config_dir = tmp_path / "analysis"
    config_dir.mkdir()
    config = changed(good(shared_data), key, f"{name}:Event")
    named, message = refused(config_dir, capsys, config)
    assert named == key.replace("/", ".") and f"module {name!r} is not one a config may name" in message
    assert not marker.exists() and name not in sys.modules


def test_modules_below_the_config_or_listed_in_the_config_are_imported(tmp_path, shared_data, capsys, monkeypatch):
    config_dir = tmp_path / "analysis"
    local, nested, listed = "corpus_local_templates", "corpus_local_pkg", "corpus_listed_templates"
    module_file(config_dir / f"{local}.py", tmp_path / "local.txt")
    module_file(config_dir / nested / "events.py", tmp_path / "nested.txt")
    (config_dir / nested / "__init__.py").write_text("")
    module_file(tmp_path / "site" / listed / "events.py", tmp_path / "listed.txt")
    (tmp_path / "site" / listed / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for i, (template, marker) in enumerate([(f"{local}:Event", "local.txt"), (f"{nested}.events:Event", "nested.txt"),
                                            (f"{listed}.events:Event", "listed.txt")]):
        config = changed(good(shared_data), "event/template", template)
        config["project"]["template_modules"] = [listed]
        path = config_dir / f"analysis{i}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert cli.main(["validate", "--config", str(path)]) == 0, capsys.readouterr().err
        assert (tmp_path / marker).exists()
    # an allow-list entry that is no module name is a config error like any other
    config = changed(good(shared_data), "project/template_modules", ["../site"])
    named, message = refused(tmp_path / "site", capsys, config)
    assert named == "project.template_modules[0]" and "not a module name" in message


# ------------------------------------------------------------------ entry and run/event list files

@pytest.mark.parametrize("content, words", [
    (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n", "line 1: is not an integer"),
    (b"3\n5\n7 8\n", "line 3: 2 values where the file should hold an entry per line"),
    (b"3\n-4\n", "line 2: a negative entry"),
    (b"1\n\x89PNG\r\n\x1a\n\x00\xff\xfe", "line 2: not text"),
], ids=["a password file", "two values on a line", "a negative entry", "a binary file"])
def test_an_entry_list_file_that_is_not_one_is_named_never_quoted(tmp_path, shared_data, capsys, content, words):
    listing = tmp_path / "entries.txt"
    listing.write_bytes(content)
    named, message = refused(tmp_path, capsys, changed(good(shared_data), "event/entry_list", str(listing)))
    assert named == "event.entry_list" and str(listing) in message and words in message
    assert "root:x" not in message and "PNG" not in message and "bash" not in message


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="no /etc/passwd on this system")
def test_etc_passwd_as_an_entry_list(tmp_path, shared_data, capsys):
    named, message = refused(tmp_path, capsys, changed(good(shared_data), "event/entry_list", "/etc/passwd"))
    assert named == "event.entry_list" and "/etc/passwd, line 1:" in message
    first = Path("/etc/passwd").read_text().splitlines()[0]
    assert first not in message and ":x:" not in message


def test_a_run_event_list_file_and_a_samples_own_list_name_their_key(tmp_path, shared_data, capsys):
    (tmp_path / "pairs.txt").write_text("1 2\n3 4 5\n")
    named, message = refused(tmp_path, capsys, changed(good(shared_data), "samples/zmumu/event",
                                                       {"run_event_list": "pairs.txt"}))
    assert named == "samples.zmumu.event.run_event_list"
    assert "pairs.txt, line 2: 3 values where the file should hold a run and an event number per line" in message
    named, message = refused(tmp_path, capsys, changed(good(shared_data), "event/skip_entry_list", "absent.txt"))
    assert named == "event.skip_entry_list" and "no such file" in message


# ------------------------------------------------------------------ input errors at run time: exit 1

def sha(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(path: Path, data: dict, name: str = "events") -> Path:
    """A ROOT file with one TTree (as ROOT writes them) of flat branches."""
    with uproot.recreate(path) as f:
        f.mktree(name, {k: v.dtype for k, v in data.items()})
        f[name].extend(data)
    return path


def bad_files(work: Path, shared_data: Path) -> None:
    """The corpus's input files, made from the real Zmumu file: byte surgery and rewritten trees."""
    zmumu = shared_data / "uproot-Zmumu.root"
    raw = zmumu.read_bytes()
    (work / "truncated.root").write_bytes(raw[: len(raw) // 3])
    (work / "garbage.root").write_bytes(b"this is not a ROOT file\n" * 40)
    (work / "zero.root").write_bytes(b"")
    names = ["Run", "Event", "M", "E1", "px1", "py1", "pz1", "Q1", "E2", "px2", "py2", "pz2", "Q2"]
    arrays = uproot.open(zmumu)["events"].arrays(names, entry_stop=300, library="np")
    write_tree(work / "empty.root", {k: v[:0] for k, v in arrays.items()})
    write_tree(work / "other_tree.root", arrays, name="Events")
    write_tree(work / "no_mass.root", {k: v for k, v in arrays.items() if k != "M"})
    nan = {**arrays, "M": arrays["M"].copy()}
    nan["M"][17] = np.nan
    write_tree(work / "nan.root", nan)
    inf = {**arrays, "E1": arrays["E1"].copy()}
    inf["E1"][23] = np.inf
    write_tree(work / "inf.root", inf)


HZZ_AS_ZMUMU = {"leaves": {"run": "NJet", "event": "NJet", "mass": "EventWeight"},
                "collections": {"muons": {"branches": {"px": "Muon_Px", "py": "Muon_Py", "pz": "Muon_Pz",
                                                       "e": "Muon_E", "charge": "Muon_Charge"},
                                          "four_vector": "pxpypze"}}}

RUNTIME_CASES = {
    # sample: (its config, the file the failing task reads, words of its failure block)
    "truncated": ({"files": ["truncated.root"]}, "truncated.root",
                  ["truncated.root: cannot be read as a ROOT file: it is truncated", "its header records"]),
    "not_root": ({"files": ["garbage.root"]}, "garbage.root",
                 ["garbage.root: cannot be read as a ROOT file", "does not start with ROOT's signature"]),
    "zero_bytes": ({"files": ["zero.root"]}, "zero.root", ["zero.root: cannot be read as a ROOT file: it is empty"]),
    "empty_tree": ({"files": ["empty.root"]}, "empty.root", ["empty.root: tree 'events' is empty (0 entries)"]),
    "missing_tree": ({"files": ["other_tree.root"]}, "other_tree.root",
                     ["other_tree.root: no tree 'events'", "'Events'"]),
    "missing_branch": ({"files": ["no_mass.root"]}, "no_mass.root",
                       ["no_mass.root: tree 'events' has no branch 'M', needed by event.template"]),
    "string_branch": ({"files": ["<uproot-Zmumu.root>"],
                       "event": {"template": {**ZMUMU_TEMPLATE, "leaves": {**ZMUMU_TEMPLATE["leaves"], "kind": "Type"}}}},
                      "uproot-Zmumu.root",
                      ["uproot-Zmumu.root: tree 'events': branch 'Type' holds a string per entry (char*)",
                       "samples.string_branch.event.template reads it as leaf 'kind'", "one number per entry"]),
    "jagged_branch": ({"files": ["<uproot-HZZ.root>"],
                       "event": {"template": {**HZZ_AS_ZMUMU, "leaves": {**HZZ_AS_ZMUMU["leaves"], "mass": "Jet_Px"}}}},
                      "uproot-HZZ.root",
                      ["uproot-HZZ.root: tree 'events': branch 'Jet_Px' holds a list of numbers per entry",
                       "reads it as leaf 'mass'", "declare it in a collection's branches"]),
    "flat_branch_as_list": ({"files": ["<uproot-HZZ.root>"], "event": {"template": {
        **HZZ_AS_ZMUMU, "collections": {"muons": {**HZZ_AS_ZMUMU["collections"]["muons"],
                                                  "branches": {**HZZ_AS_ZMUMU["collections"]["muons"]["branches"],
                                                               "charge": "NMuon"}}}}}},
                            "uproot-HZZ.root",
                            ["branch 'NMuon' holds one number per entry",
                             "reads it as attribute 'charge' of collection 'muons'", "a list of numbers per entry"]),
    "nan": ({"files": ["nan.root"]}, "nan.root", ["nan.root: branch 'M' holds nan (first at entry 17)",
                                                 "event.non_finite"]),
    "inf": ({"files": ["inf.root"]}, "inf.root", ["inf.root: branch 'E1' holds inf (first at entry 23)",
                                                 "event.non_finite"]),
}


def with_files(sample: dict, shared_data: Path) -> dict:
    sample = copy.deepcopy(sample)
    sample["files"] = [str(shared_data / f[1:-1]) if f.startswith("<") else f for f in sample["files"]]
    return sample


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data) -> dict:
    """One output directory: the good config run to ApplySelections, then the good config plus every
    failing sample, then plus the samples whose NaN and infinity are dropped or filled (and one read
    by a Python template beside the config); the hashes of the good run's files after each run."""
    work = tmp_path_factory.mktemp("corpus")
    bad_files(work, shared_data)
    base = good(shared_data)
    out = {}
    (work / "good.yaml").write_text(yaml.safe_dump(base))
    out["good"] = tracerflow("run", "--config", "good.yaml", "--until", "ApplySelections", cwd=work, check=True)
    root = work / "out" / "corpus"
    out["hashes"] = sha(root)
    bad = copy.deepcopy(base)
    for sample, (spec, _, _) in RUNTIME_CASES.items():
        bad["samples"][sample] = with_files(spec, shared_data)
    (work / "bad.yaml").write_text(yaml.safe_dump(bad))
    out["bad"] = tracerflow("run", "--config", "bad.yaml", "--until", "ApplySelections", cwd=work)
    out["after_bad"] = sha(root)
    goes_on = copy.deepcopy(base)
    goes_on["samples"]["nan_dropped"] = {"files": ["nan.root"], "event": {"non_finite": "drop"}}
    goes_on["samples"]["inf_filled"] = {"files": ["inf.root"], "event": {"non_finite": "fill", "fill_value": -1.0}}
    module_file(work / "corpus_zmumu_template.py", work / "imported.txt")  # beside the config: one it may name
    goes_on["samples"]["python_template"] = {"files": base["samples"]["zmumu"]["files"],
                                             "event": {"template": "corpus_zmumu_template:Event"}}
    (work / "goes_on.yaml").write_text(yaml.safe_dump(goes_on))
    out["goes_on"] = tracerflow("run", "--config", "goes_on.yaml", "--until", "ApplySelections", cwd=work)
    out["after_goes_on"] = sha(root)
    out["root"] = root
    return out


def failure_block(stderr: str, sample: str, file: str) -> str:
    """The lines tracerflow printed for the failed BuildEvents of ``sample``'s ``file``."""
    lines = stderr.splitlines()
    head = f"tracerflow: BuildEvents(sample={sample}, file={file}) failed"
    assert head in lines, f"no block {head!r} in:\n{stderr}"
    start = lines.index(head)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.slow
@pytest.mark.parametrize("sample", RUNTIME_CASES)
def test_bad_input_fails_its_task_by_name_and_keeps_what_was_written(corpus, sample):
    _, file, words = RUNTIME_CASES[sample]
    proc = corpus["bad"]
    assert proc.returncode == 1
    block = failure_block(proc.stderr, sample, file)
    for word in words:
        assert word in block, block
    assert "Traceback" not in proc.stderr and "traceback: " in block  # the traceback is in the log file
    assert not list((corpus["root"] / "events" / sample).glob("*.h5*"))  # nothing written, not even a part
    before = corpus["hashes"]
    assert {path: corpus["after_bad"][path] for path in before} == before


@pytest.mark.slow
def test_non_finite_values_dropped_or_filled_let_the_run_go_on(corpus):
    """And a template class from a module beside the config is imported where BuildEvents runs."""
    proc, root = corpus["goes_on"], corpus["root"]
    assert proc.returncode == 0, proc.stderr
    with h5py.File(root / "events" / "nan_dropped" / "nan.h5") as f:
        assert len(f["index/entry"]) == 299 and 17 not in f["index/entry"][:]
        assert np.isfinite(f["event/mass"][:]).all()
    with h5py.File(root / "events" / "inf_filled" / "inf.h5") as f:
        energies = f["muons/e"][:]  # two muons per event, E1 first
        assert len(f["index/entry"]) == 300 and energies[2 * 23] == -1.0 and np.isfinite(energies).all()
    with h5py.File(root / "events" / "python_template" / "uproot-Zmumu.h5") as f, \
            h5py.File(root / "events" / "zmumu" / "uproot-Zmumu.h5") as g:
        np.testing.assert_array_equal(f["muons/pt"][:], g["muons/pt"][:])
    before = corpus["hashes"]
    assert {path: corpus["after_goes_on"][path] for path in before} == before
