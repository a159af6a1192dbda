"""The servers of conftest.py serve real files as real clients read them: whole and in ranges
through fsspec (fsspec-xrootd, aiohttp), a stopped server fails reads within seconds, a
restarted one (from any thread) serves again, and the next test finds a server running whatever
the last one left it as."""
from __future__ import annotations

import re
import threading
import time
import urllib.request

import fsspec
import pytest

pytestmark = pytest.mark.remote

SERVERS = ("xrootd", "http")
# Outage reads must fail well within this (the XRootD client's settings: servers.XROOTD_CLIENT_ENV).
QUICKLY_S = 10.0


@pytest.fixture
def hzz(shared_data):
    return shared_data / "uproot-HZZ.root"


def _filesystem(url: str):
    """A new fsspec file system for ``url`` (not the cached instance: its connections and,
    for XRootD, its open file handles outlive a restart of the server) and the path in it."""
    return fsspec.core.url_to_fs(url, skip_instance_cache=True)


@pytest.mark.parametrize("kind", SERVERS)
def test_a_put_file_reads_back_whole_and_in_ranges(request, kind, hzz):
    server = request.getfixturevalue(kind)
    data = hzz.read_bytes()
    url = server.put(hzz, "inputs/run 1/HZZ.root")
    assert url.startswith(f"{server.scheme}://127.0.0.1:{server.port}/")
    assert (server.export / "inputs/run 1/HZZ.root").read_bytes() == data

    with fsspec.open(url, "rb") as f:
        assert f.read() == data
    fs, path = _filesystem(url)
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
    fs, path = _filesystem(url)
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
            _filesystem(url)[0].cat_file(path, 0, 100)
        assert time.monotonic() - began < QUICKLY_S

    port, export = server.port, server.export
    server.start()
    assert server.running and (server.port, server.export) == (port, export)
    server.start()  # a no-op while it runs
    fs, path = _filesystem(url)
    assert fs.cat_file(path, 5000, 6000) == data[5000:6000]
    with fsspec.open(url, "rb") as f:
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
    fs, path = _filesystem(server.put(hzz, "thread/HZZ.root"))
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
    fs, path = _filesystem(server.put(hzz, "again/HZZ.root"))
    assert fs.cat_file(path, 0, 4) == b"root"


def test_the_servers_log_where_they_say(xrootd, http):
    assert re.search(r"xrootd \S+ initialization completed", xrootd.log.read_text())
    assert http.log.is_file() and http.access_log.is_file()
