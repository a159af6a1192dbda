"""Samples whose files are ``root://``, ``http://`` and ``https://`` URLs, read in place from a real
xrootd and a real nginx (tests/remote/servers.py): the same analysis from local files, over XRootD,
over HTTP and over HTTPS (the server's self-signed certificate trusted through ``SSL_CERT_FILE``)
gives byte-identical caches; an HTTPS server whose certificate is not trusted fails naming the URL
and the certificate; a read that fails mid-file is retried on a new connection and, when the
server stays away, fails naming the URL; a missing file on the server is named at once."""
from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from pathlib import Path

import pytest

from tracerflow.events.remote import Access, RemoteError
from tracerflow.events.source import RootSource, SourceError, file_identity

from ..workflow.helpers import tracerflow

pytestmark = pytest.mark.remote

#: Two copies of a real ntuple in two directories: logical names "a/hzz.root" and "b/hzz.root" (below
#: the deepest directory they share).
LAYOUT = ("mc/a/hzz.root", "mc/b/hzz.root")
ANALYSIS = """\
project: {{name: hzz}}
samples:
  s:
    files: [{files}]
event:
  template:
    collections:
      muons: {{branches: {{px: Muon_Px, py: Muon_Py, pz: Muon_Pz, e: Muon_E}}, four_vector: pxpypze}}
      jets: {{branches: {{px: Jet_Px, py: Jet_Py, pz: Jet_Pz, e: Jet_E}}, four_vector: pxpypze}}
  chunk_size: 500
graph:
  template: {{nodes: muons, node_features: {{pt: muons.pt, eta: muons.eta}}}}
selection:
  template:
    cuts: {{two_muons: count(muons) >= 2}}
    outputs: {{lead_pt: max(muons.pt)}}
remote: {{retries: 1, retry_wait: 0.2, timeout: 10}}
"""
VOLATILE = ("*.log", "*.timings.csv")


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not any(p.match(v) for v in VOLATILE)}


def _analysis(work: Path, files: list[str]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "analysis.yaml").write_text(ANALYSIS.format(files=", ".join(files)))
    return work


def test_the_same_analysis_from_local_files_xrootd_http_and_https_gives_byte_identical_caches(
        xrootd, http, https, shared_data, tmp_path):
    source = shared_data / "uproot-HZZ.root"
    local = tmp_path / "local"
    for name in LAYOUT:
        (local / "store" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, local / "store" / name)
    works = {"local": _analysis(local, [f"store/{name}" for name in LAYOUT]),
             "xrootd": _analysis(tmp_path / "xrootd", [xrootd.put(source, f"t1/{name}") for name in LAYOUT]),
             "http": _analysis(tmp_path / "http", [http.put(source, f"t1/{name}") for name in LAYOUT]),
             "https": _analysis(tmp_path / "https",
                                [https.put(source, f"t1/{name}") for name in LAYOUT])}
    # the https server's certificate, trusted the way a user would: verification stays on
    trust = {"https": {"SSL_CERT_FILE": str(https.ca_file)}}
    digests = {}
    for kind, work in works.items():
        proc = tracerflow("run", "--config", "analysis.yaml", cwd=work, env=trust.get(kind))
        assert proc.returncode == 0, (kind, proc.stdout, proc.stderr)
        assert "3 ran" not in proc.stdout and "6 ran" in proc.stdout, proc.stdout  # 3 stages x 2 files
        digests[kind] = _digests(work / "tracerflow-output" / "hzz")
    assert {"events/s/a/hzz.h5", "events/s/b/hzz.h5", "selections/s/b/hzz.h5"} <= set(digests["local"])
    for kind in ("xrootd", "http", "https"):
        assert digests[kind].keys() == digests["local"].keys(), kind
        assert [n for n in digests[kind] if digests[kind][n] != digests["local"][n]] == [], kind

    # a URL's identity is the local file's: its size, ROOT UUID and ends, whatever the server
    identity = file_identity(local / "store" / LAYOUT[0])
    assert identity == file_identity(xrootd.url(f"t1/{LAYOUT[0]}")) == file_identity(http.url(f"t1/{LAYOUT[0]}"))
    assert identity["uuid"] is not None and identity["size"] == source.stat().st_size

    # everything is done: a second run over the servers reads nothing again
    again = tracerflow("run", "--config", "analysis.yaml", cwd=works["http"])
    assert again.returncode == 0 and again.stdout.startswith("tracerflow: nothing to run"), again.stdout

    # a file replaced on the server (another identity) is built again
    time.sleep(1.1)  # nginx's validator has whole seconds
    http.put(shared_data / "uproot-Zmumu.root", f"t1/{LAYOUT[1]}")
    changed = tracerflow("run", "--config", "analysis.yaml", cwd=works["http"])
    assert changed.returncode == 1 and "b/hzz.root" in changed.stderr and "Muon_Px" in changed.stderr, changed.stderr
    assert "Traceback" not in changed.stderr


def test_an_https_server_whose_certificate_is_not_trusted_is_named_with_the_certificate(
        https, shared_data, monkeypatch):
    url = https.put(shared_data / "uproot-HZZ.root", "t6/hzz.root")
    # Reaches SSL contexts made from now on; aiohttp's own default one was made when it was imported,
    # from whatever the environment said then, which cannot be this fresh certificate either.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(RemoteError) as failed:
        RootSource(url, "events", access=Access(retries=0, retry_wait=0.0, timeout=5))
    message = str(failed.value)
    assert message.startswith(f"{url}: stat failed after 1 try"), message
    assert "certificate verify failed: self-signed certificate" in message, message


@pytest.mark.parametrize("scheme", ["root", "http"])
def test_a_read_that_fails_mid_file_is_retried_on_a_new_connection(scheme, xrootd, http, shared_data, caplog):
    server = {"root": xrootd, "http": http}[scheme]
    url = server.put(shared_data / "uproot-HZZ.root", f"t2/{scheme}/hzz.root")
    access = Access(retries=4, retry_wait=1.0, timeout=5)  # tries 1, 3, 6 and 10 s after the failure
    entries = range(0, 2421, 7)
    with RootSource(url, "events", access=access) as root:
        first = root.read(["Jet_Px"], list(entries))
        assert len(first["Jet_Px"]) == len(entries)

        server.stop()  # mid-file: the tree is open, its baskets not yet read
        back = threading.Thread(target=lambda: (time.sleep(1.5), server.start()))
        back.start()
        with caplog.at_level(logging.WARNING, logger="tracerflow"):
            arrays = root.read(["Muon_Px", "Muon_Py"], list(entries))
        back.join()
        assert len(arrays["Muon_Px"]) == len(entries)
        retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
        assert retries and all(m.startswith(url) for m in retries), retries

    with RootSource(shared_data / "uproot-HZZ.root", "events") as local:
        expected = local.read(["Muon_Px", "Muon_Py"], list(entries))
    assert arrays["Muon_Px"].tolist() == expected["Muon_Px"].tolist()


@pytest.mark.parametrize("scheme", ["root", "http"])
def test_a_server_that_stays_away_fails_naming_the_url_after_the_retries(scheme, xrootd, http, shared_data):
    server = {"root": xrootd, "http": http}[scheme]
    url = server.put(shared_data / "uproot-HZZ.root", f"t3/{scheme}/hzz.root")
    access = Access(retries=2, retry_wait=0.1, timeout=3)
    with RootSource(url, "events", access=access) as root:
        server.stop()
        started = time.monotonic()
        with pytest.raises(RemoteError) as failed:
            root.read(["Jet_Py"], list(range(100)))
        assert time.monotonic() - started < 30
    assert str(failed.value).startswith(f"{url}: reading entries [0, 100) of tree 'events' failed after 3 tries")
    with pytest.raises(RemoteError, match=f"^{url}: stat failed after 3 tries"):
        RootSource(url, "events", access=access)


def test_a_run_names_the_unreachable_url_and_the_next_run_goes_on(http, shared_data, tmp_path):
    url = http.put(shared_data / "uproot-HZZ.root", "t4/hzz.root")
    work = _analysis(tmp_path / "work", [url])
    http.stop()
    proc = tracerflow("run", "--config", "analysis.yaml", cwd=work)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"BuildEvents(sample=s, file=hzz.root) failed\n    {url}: stat failed after 2 tries" in proc.stderr
    assert "Traceback" not in proc.stderr and "hint: the server named above" in proc.stderr
    assert not (work / "tracerflow-output" / "hzz" / "events").exists()
    http.start()
    again = tracerflow("run", "--config", "analysis.yaml", cwd=work)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_file_missing_on_the_server_is_named_at_once(xrootd, http, tmp_path):
    for url in (xrootd.url("t5/none.root"), http.url("t5/none.root")):
        with pytest.raises(SourceError, match=f"^{url}: no such file on the server$"):
            RootSource(url, "events", access=Access(retries=5, retry_wait=10.0, timeout=5))
        assert file_identity(url) is None
