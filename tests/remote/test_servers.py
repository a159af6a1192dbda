"""The servers of conftest.py serve real files as real clients read them: whole and in ranges
through fsspec (fsspec-xrootd, aiohttp; over HTTPS trusting the server's own certificate, with
verification on), a stopped server fails reads within seconds, a restarted one (from any thread)
serves again, and the next test finds a server running whatever the last one left it as. A
client trusts the HTTPS server through ``SSL_CERT_FILE`` and refuses it, naming the certificate,
without."""
from __future__ import annotations

import hashlib
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import fsspec
import pytest

pytestmark = pytest.mark.remote

SERVERS = ("xrootd", "http", "https")
# Outage reads must fail well within this (the XRootD client's settings: servers.XROOTD_CLIENT_ENV).
QUICKLY_S = 10.0


@pytest.fixture
def hzz(shared_data):
    return shared_data / "uproot-HZZ.root"


def _trusting(server) -> dict:
    """fsspec's options for reading from ``server``: over HTTPS an SSL context that trusts the
    server's certificate (aiohttp's default context was made when it was imported: a later
    SSL_CERT_FILE does not reach it in this process)."""
    if server.ca_file is None:
        return {}
    return {"ssl": ssl.create_default_context(cafile=server.ca_file)}


def _filesystem(url: str, server):
    """A new fsspec file system for ``url`` (not the cached instance: its connections and,
    for XRootD, its open file handles outlive a restart of the server) and the path in it."""
    return fsspec.core.url_to_fs(url, skip_instance_cache=True, **_trusting(server))


@pytest.mark.parametrize("kind", SERVERS)
def test_a_put_file_reads_back_whole_and_in_ranges(request, kind, hzz):
    server = request.getfixturevalue(kind)
    data = hzz.read_bytes()
    url = server.put(hzz, "inputs/run 1/HZZ.root")
    assert url.startswith(f"{server.scheme}://127.0.0.1:{server.port}/")
    assert (server.export / "inputs/run 1/HZZ.root").read_bytes() == data

    with fsspec.open(url, "rb", **_trusting(server)) as f:
        assert f.read() == data
    fs, path = _filesystem(url, server)
    assert fs.cat_file(path, 1000, 2000) == data[1000:2000]
    assert fs.cat_file(path, len(data) - 10, len(data)) == data[-10:]
    assert fs.size(path) == len(data)
    if server.access_log is not None:  # nginx served the range itself, not the whole file
        assert "GET /inputs/run 1/HZZ.root bytes=1000-1999 206 1000" in server.access_log.read_text()


def test_nginx_answers_ranges_with_validators(http, hzz):
    data = hzz.read_bytes()
    url = http.put(hzz, "HZZ.root")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as answer:
        assert answer.status == 206
        assert answer.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert answer.headers["ETag"] and answer.headers["Last-Modified"]
        assert answer.read() == data[10:20]
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=0-3,100-103"})) as answer:
        assert answer.status == 206
        assert answer.headers.get_content_type() == "multipart/byteranges"
        body = answer.read()
    assert data[0:4] in body and data[100:104] in body


@pytest.mark.parametrize("kind", SERVERS)
def test_a_stopped_server_fails_reads_quickly_and_a_restarted_one_serves_again(request, kind, hzz):
    server = request.getfixturevalue(kind)
    data = hzz.read_bytes()
    url = server.put(hzz, "outage/HZZ.root")
    fs, path = _filesystem(url, server)
    assert fs.cat_file(path, 0, 100) == data[:100]
    # fsspec-xrootd keeps the file open for later reads: closed now, while the server is up,
    # else the handle the outage breaks fails to close when the interpreter exits (a traceback).
    fs.invalidate_cache()

    server.stop()
    assert not server.running and server.pid is None
    server.stop()  # idempotent
    for _ in range(2):  # the connection the stop broke, then a refused one
        began = time.monotonic()
        with pytest.raises(OSError):
            _filesystem(url, server)[0].cat_file(path, 0, 100)
        assert time.monotonic() - began < QUICKLY_S

    port, export = server.port, server.export
    server.start()
    assert server.running and (server.port, server.export) == (port, export)
    server.start()  # a no-op while it runs
    fs, path = _filesystem(url, server)
    assert fs.cat_file(path, 5000, 6000) == data[5000:6000]
    with fsspec.open(url, "rb", **_trusting(server)) as f:
        assert f.read() == data


@pytest.mark.parametrize("kind", SERVERS)
def test_a_server_started_from_a_thread_outlives_the_thread(request, kind, hzz):
    server = request.getfixturevalue(kind)
    server.stop()
    back = threading.Thread(target=server.start)
    back.start()
    back.join()
    time.sleep(0.5)  # a death-with-parent signal tied to that thread would have come by now
    assert server.running
    fs, path = _filesystem(server.put(hzz, "thread/HZZ.root"), server)
    assert fs.cat_file(path, 0, 4) == b"root"


@pytest.mark.parametrize("kind", SERVERS)
def test_a_test_may_leave_its_server_stopped(request, kind):
    server = request.getfixturevalue(kind)
    server.stop()
    assert not server.running


@pytest.mark.parametrize("kind", SERVERS)
def test_the_next_test_finds_it_running(request, kind, hzz):
    server = request.getfixturevalue(kind)
    assert server.running
    fs, path = _filesystem(server.put(hzz, "again/HZZ.root"), server)
    assert fs.cat_file(path, 0, 4) == b"root"


def test_the_servers_log_where_they_say(xrootd, http, https):
    assert re.search(r"xrootd \S+ initialization completed", xrootd.log.read_text())
    for nginx in (http, https):
        assert nginx.log.is_file() and nginx.access_log.is_file()
    assert xrootd.ca_file is None and http.ca_file is None


def test_the_https_server_has_a_self_signed_certificate_for_its_address(https, hzz):
    assert https.ca_file.is_file() and https.ca_file.parent == https.directory
    text = subprocess.run(["openssl", "x509", "-in", str(https.ca_file), "-noout", "-subject", "-issuer", "-ext",
                           "subjectAltName"], capture_output=True, text=True, check=True).stdout
    assert "subject=CN = 127.0.0.1" in text and "issuer=CN = 127.0.0.1" in text and "IP Address:127.0.0.1" in text
    url = https.put(hzz, "certificate/HZZ.root")
    ranged = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    # verified (the host name too) against that certificate alone
    trusting = ssl.create_default_context(cafile=https.ca_file)
    assert trusting.check_hostname and trusting.verify_mode == ssl.CERT_REQUIRED
    with urllib.request.urlopen(ranged, context=trusting) as answer:
        assert answer.status == 206 and answer.read() == hzz.read_bytes()[10:20]
    # the system's certificates do not vouch for it
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED.*self-signed certificate"):
        urllib.request.urlopen(ranged, context=ssl.create_default_context())


def test_a_client_process_trusts_the_https_server_through_SSL_CERT_FILE_and_only_so(https, hzz):
    url = https.put(hzz, "environment/HZZ.root")
    read = ("import hashlib, sys, fsspec\n"
            "with fsspec.open(sys.argv[1], 'rb') as f:\n"
            "    print(hashlib.sha256(f.read()).hexdigest())")
    without = {key: value for key, value in os.environ.items() if key != "SSL_CERT_FILE"}

    trusted = subprocess.run([sys.executable, "-c", read, url], capture_output=True, text=True,
                             env={**without, "SSL_CERT_FILE": str(https.ca_file)})
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == hashlib.sha256(hzz.read_bytes()).hexdigest()

    refused = subprocess.run([sys.executable, "-c", read, url], capture_output=True, text=True, env=without)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr
