"""Samples of root:// and http(s):// URLs in a config: checked for form before anything runs (no
server is contacted), given the logical names the same files have on disk, and counted by logical
name in config_ref, so that an analysis keeps its name when its inputs move to a server."""
from __future__ import annotations

import pytest

from tracerflow.config import ConfigError, load_config
from tracerflow.events.remote import Access, describe, is_url
from tracerflow.tasks.base import config_ref

from ..workflow.helpers import tracerflow

SERVER = "root://eos.example.org:1094"


def write(tmp_path, files: list[str], extra: str = "", name: str = "analysis"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"project: {{name: t, output_dir: out}}\nsamples:\n  s:\n    files: [{', '.join(files)}]\n{extra}"
                    "event:\n  template:\n    leaves: {w: EventWeight}\n"
                    "selection:\n  template: {level: event}\n")
    return path


def test_urls_get_the_logical_names_the_same_files_have_on_disk(tmp_path, shared_data):
    store = tmp_path / "store"
    for name in ("mc/a/f1.root", "mc/b/f2.root"):
        (store / name).parent.mkdir(parents=True, exist_ok=True)
        (store / name).write_bytes((shared_data / "uproot-HZZ.root").read_bytes())
    local = load_config(write(tmp_path / "l", [str(store / "mc/a/f1.root"), str(store / "mc/b/f2.root")]))
    urls = [f"{SERVER}//eos/user/t/store/mc/a/f1.root", f"{SERVER}//eos/user/t/store/mc/b/f2.root"]
    remote = load_config(write(tmp_path / "r", urls))
    assert [f.logical for f in local.sample_files("s")] == [f.logical for f in remote.sample_files("s")] \
        == ["a/f1.root", "b/f2.root"]
    assert [f.path for f in remote.sample_files("s")] == urls  # kept as written, never made a Path

    https = load_config(write(tmp_path / "h", ["https://data.example.org/store/mc/a/f1.root",
                                               "https://data.example.org/store/mc/b/f2.root"]))
    assert [f.logical for f in https.sample_files("s")] == ["a/f1.root", "b/f2.root"]
    rooted = load_config(write(tmp_path / "o", urls, extra=f"    root: {SERVER}//eos/user/t/store\n"))
    assert [f.logical for f in rooted.sample_files("s")] == ["mc/a/f1.root", "mc/b/f2.root"]

    # the same analysis, wherever its files are kept, has one config_ref (the stem and the analysis)
    assert config_ref(str(write(tmp_path / "l", [str(store / "mc/a/f1.root"), str(store / "mc/b/f2.root")])), ()) \
        == config_ref(str(write(tmp_path / "r", urls)), ())
    other = write(tmp_path / "x", [str(store / "mc/a/f1.root")])
    assert config_ref(str(other), ()) != config_ref(str(tmp_path / "l" / "analysis.yaml"), ())


@pytest.mark.parametrize("files, extra, key, message", [
    ([f"{SERVER}//store/*.root"], "", "samples.s.files[0]", "wildcards are not expanded in URLs"),
    ([f"{SERVER}/store/f.root"], "", "samples.s.files[0]", "an XRootD path starts with a double slash"),
    (["https:///store/f.root"], "", "samples.s.files[0]", "no server named"),
    (["https://h.org/store/"], "", "samples.s.files[0]", "names a directory, not a file"),
    (["https://h.org:port/f.root"], "", "samples.s.files[0]", "the port is not a number"),
    ([f"{SERVER}//store/f.root", "https://h.org/store/g.root"], "", "samples.s.files",
     "URLs of 2 servers (https://h.org, root://eos.example.org:1094)"),
    ([f"{SERVER}//store/f.root", f"{SERVER}//store/f.root"], "", "samples.s.files", "lists the same file twice"),
    ([f"{SERVER}//store/f.root"], f"    root: {SERVER}//other\n", "samples.s.root", "is not below the sample root"),
    ([f"{SERVER}//store/f.root"], "    root: /store\n", "samples.s.root", "the root is a URL prefix"),
])
def test_a_bad_url_is_refused_naming_its_key_before_anything_runs(tmp_path, files, extra, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, files, extra))
    assert err.value.key == key and message in err.value.message, (err.value.key, err.value.message)


def test_local_files_and_urls_in_one_sample_are_refused_by_the_cli_with_exit_code_2(tmp_path, shared_data):
    path = write(tmp_path, [str(shared_data / "uproot-HZZ.root"), f"{SERVER}//store/f.root"])
    proc = tracerflow("run", "--config", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "samples.s.files[0]" in proc.stderr and "all local or all URLs of one server" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_the_remote_block_is_validated_and_left_out_of_config_ref(tmp_path):
    urls = [f"{SERVER}//store/f.root"]
    plain = write(tmp_path / "a", urls)
    tuned = write(tmp_path / "b", urls, extra="")
    tuned.write_text(tuned.read_text() + "remote: {retries: 7, retry_wait: 0.5, timeout: 20}\n")
    assert load_config(tuned).remote_access == Access(retries=7, retry_wait=0.5, timeout=20.0)
    assert load_config(plain).remote_access == Access.default() == Access(retries=3, retry_wait=2.0, timeout=60.0)
    assert config_ref(str(plain), ()) == config_ref(str(tuned), ())
    bad = write(tmp_path / "c", urls)
    bad.write_text(bad.read_text() + "remote: {retries: -1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert err.value.key == "remote.retries"


def test_what_counts_as_a_url_and_how_a_failure_is_told():
    assert is_url("root://h//f.root") and is_url("HTTPS://h/f.root") and is_url("xroot://h//f.root")
    assert not is_url("/data/f.root") and not is_url("data/root:/f.root") and not is_url("s3://b/f.root")
    try:
        try:
            raise ConnectionRefusedError("Connect call failed ('127.0.0.1', 9)")
        except ConnectionRefusedError as cause:
            raise FileNotFoundError("http://127.0.0.1:9/f.root") from cause
    except FileNotFoundError as err:
        assert describe(err) == "ConnectionRefusedError: Connect call failed ('127.0.0.1', 9)"


def test_only_a_404_or_xrootds_not_found_counts_as_a_missing_file():
    from tracerflow.events.remote import _missing

    def chained(outer: BaseException, inner: BaseException | None) -> BaseException:
        try:
            try:
                raise inner if inner is not None else outer
            except BaseException as cause:
                if inner is None:
                    raise
                raise outer from cause
        except BaseException as err:
            return err

    refused = ConnectionRefusedError("Cannot connect to host 127.0.0.1:40404 ssl:default")
    assert not _missing(chained(FileNotFoundError("http://127.0.0.1:40404/x.root"), refused))  # a port with 404
    assert _missing(chained(FileNotFoundError("http://h/x.root"), FileNotFoundError("http://h/x.root")))
    assert _missing(FileNotFoundError("http://h/x.root"))
    status = type("ClientResponseError", (Exception,), {"status": 404})
    assert _missing(chained(FileNotFoundError("http://h/x.root"), status("Not Found")))
    assert _missing(OSError("File stat request failed: [ERROR] Server responded with an error: [3011] Unable to locate"))
    assert not _missing(OSError("File did not vector_read properly: [FATAL] Connection error"))
