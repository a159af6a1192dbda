"""The file servers of the remote-input tests (tests/remote/servers.py says what they provide):

* ``xrootd_server``, ``http_server``, ``https_server``: a real xrootd, a real nginx on HTTP and
  another on HTTPS (a self-signed certificate, ``Server.ca_file``: what a client must trust),
  each started once per test session and stopped at its end (session scope). While
  ``xrootd_server`` is up, the XRootD client of the test process has servers.XROOTD_CLIENT_ENV
  (a stopped server fails reads within seconds, a restarted one is reached again at once): set
  before any test can connect, since XRootD keeps a connection's settings for the life of the
  process;
* ``xrootd``, ``http``, ``https``: the same servers, started again first if an earlier test
  stopped them (a test may ``stop()`` one to simulate an outage): what tests use.

Where a server cannot run (not installed and not installable: not root, no apt-get) the tests
using it skip, saying why; installed but not starting, not stopping, or dying on its own is a
test error carrying the tail of its log."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..daemons import Broken, session_daemon
from .servers import Server, serving, xrootd_client_env

__all__ = ["Server", "http", "http_server", "https", "https_server", "xrootd", "xrootd_server"]


def _session_server(scheme: str) -> Iterator[Server]:
    yield from session_daemon(serving(scheme))


def _running(server: Server) -> Server:
    try:
        server.start()
    except Broken as why:
        pytest.fail(str(why), pytrace=False)
    return server


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[Server]:
    """An xrootd serving ``export`` on ``root://127.0.0.1:PORT//<export>/...``, for the session."""
    for server in _session_server("root"):
        with xrootd_client_env():
            yield server


@pytest.fixture(scope="session")
def http_server() -> Iterator[Server]:
    """An nginx serving ``export`` on ``http://127.0.0.1:PORT/...`` (range requests), for the session."""
    yield from _session_server("http")


@pytest.fixture(scope="session")
def https_server() -> Iterator[Server]:
    """An nginx serving ``export`` on ``https://127.0.0.1:PORT/...`` (range requests) with a
    self-signed certificate, ``ca_file``, for the session."""
    yield from _session_server("https")


@pytest.fixture
def xrootd(xrootd_server: Server) -> Server:
    """The session's xrootd, running at the start of the test."""
    return _running(xrootd_server)


@pytest.fixture
def http(http_server: Server) -> Server:
    """The session's nginx, running at the start of the test."""
    return _running(http_server)


@pytest.fixture
def https(https_server: Server) -> Server:
    """The session's nginx on HTTPS, running at the start of the test."""
    return _running(https_server)
