"""Config files refused before anything runs: keys given twice, names that would become bad paths,
entry lists that are not entry lists (without echoing what the file holds)."""
from __future__ import annotations

import pytest
import yaml

from tracerflow.config import ConfigError, load_config



def config(tmp_path, text: str):
    path = tmp_path / "analysis.yaml"
    path.write_text(text)
    return path


def minimal(shared_data, sample="hzz", extra=""):
    return (f"project: {{name: t, output_dir: out}}\n"
            f"samples:\n  {sample}: {{files: [{shared_data / 'uproot-HZZ.root'}]}}\n"
            "event:\n  template:\n    leaves: {w: EventWeight}\n"
            "selection:\n  template: {level: event}\n" + extra)


@pytest.mark.parametrize("extra, key, lines", [
    ("selection:\n  template: {level: event}\n", "selection", "lines 7 and 9"),
    ("project: {name: u}\n", "project", "lines 1 and 9"),
])
def test_a_key_given_twice_is_refused_with_its_path_and_lines(tmp_path, shared_data, extra, key, lines):
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, minimal(shared_data, extra=extra)))
    assert err.value.key == key and lines in err.value.message


def test_a_nested_duplicate_names_its_full_path(tmp_path, shared_data):
    text = minimal(shared_data).replace("leaves: {w: EventWeight}", "leaves: {w: EventWeight, w: MET_px}")
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, text))
    assert err.value.key == "event.template.leaves.w"


@pytest.mark.parametrize("sample", ["/somewhere/escape", "../up", "hz.z", "a b"])
def test_sample_names_that_are_not_plain_names_are_refused(tmp_path, shared_data, sample):
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, minimal(shared_data, sample=yaml.safe_dump(sample).split("\n")[0])))
    assert err.value.key == f"samples.{sample}" and "not a plain name" in err.value.message


def test_names_that_differ_only_in_case_are_refused(tmp_path, shared_data):
    text = minimal(shared_data).replace("samples:\n", f"samples:\n  HZZ: {{files: [{shared_data / 'uproot-Zmumu.root'}]}}\n")
    with pytest.raises(ConfigError, match="differ only in case"):
        load_config(config(tmp_path, text))


def test_an_entry_list_that_is_not_one_is_refused_without_echoing_it(tmp_path, shared_data):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:do not print me\n")
    text = minimal(shared_data, extra=f"").replace("event:\n", f"event:\n  entry_list: {secret}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config(tmp_path, text))
    assert err.value.key == "event.entry_list" and "do not print me" not in str(err.value)


def test_a_samples_own_entry_list_file_is_read(tmp_path, shared_data):
    (tmp_path / "entries.txt").write_text("3\n5 # a comment\n")
    text = minimal(shared_data).replace("hzz: {files:", "hzz: {event: {entry_list: entries.txt}, files:")
    cfg = load_config(config(tmp_path, text))
    assert cfg.block_for("event", "hzz")["entry_list"] == [3, 5]
