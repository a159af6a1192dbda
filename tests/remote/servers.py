"""Real file servers for the tests of reading inputs remotely: what the ``xrootd_server``,
``http_server`` and ``https_server`` fixtures of conftest.py start with :func:`serving`.

Each is one daemon on this host, started as a child process and stopped by its PID:

* ``serving("root")``: Debian's ``xrootd`` (package ``xrootd-server``), anonymous, exporting
  one directory (clients may write to it too: xrootd's default export is read-write); URLs
  ``root://127.0.0.1:PORT//<export>/<relative>`` (the double slash: an absolute path; the
  path is literal, XRootD does not decode ``%XX``). It refuses to run as root, so as root it
  runs as ``nobody`` (the export, admin and log directories belong to ``nobody``).
* ``serving("http")``: Debian's ``nginx`` serving one directory as static files on plain HTTP,
  with range requests (``206 Partial Content``, multi-range ``multipart/byteranges`` too),
  ``ETag`` and ``Last-Modified``; URLs ``http://127.0.0.1:PORT/<relative>`` (percent-encoded).
  Its access log (``access_log``) has one line per request, ``METHOD URI RANGE STATUS BYTES``
  (``-`` for no Range header; the readiness checks are ``HEAD / - 403 0``), so a test can
  tell ranged reads from whole downloads. nginx's ``ETag`` is the file's size and
  modification time in whole seconds: a file replaced by one of the same size within the
  same second keeps its ``ETag`` (set the mtime with ``os.utime`` to differ).
* ``serving("https")``: the same nginx speaking HTTPS on its port (same access log), with a
  self-signed certificate for ``127.0.0.1`` (RSA 2048, valid 2 days,
  ``subjectAltName=IP:127.0.0.1``) that ``openssl req -x509`` makes in its directory when the
  server is created (a restart keeps it); URLs
  ``https://127.0.0.1:PORT/<relative>``. ``Server.ca_file`` is that certificate (PEM; None
  for the other servers): what a client must trust, with verification on. Python's default
  SSL context, which aiohttp uses (fsspec's HTTP), reads the ``SSL_CERT_FILE`` environment
  variable, but aiohttp makes that context once, when it is imported: a subprocess with
  ``SSL_CERT_FILE=<ca_file>`` in its environment trusts the server; in this process pass an
  explicit context (``ssl.create_default_context(cafile=server.ca_file)``, fsspec's
  ``ssl=`` option).

Each listens on 127.0.0.1 on a free TCP port, with every file (configuration, PID, logs,
certificate, the exported directory) in a fresh directory straight under the temporary
directory (mode 0755, so that the unprivileged server processes can reach the export). A
:class:`Server` is the running daemon: ``put`` copies a file into the export (world-readable)
and returns its URL, ``stop`` stops the daemon (to simulate an outage) and ``start`` starts it
again on the same port and export, returning once it answers (from any thread: a test may
bring a server back from a background thread while it reads). A daemon gets SIGTERM when this
process dies, so that a killed test session leaves none behind.

Ready means: xrootd answers the XRootD protocol handshake on its port (checked with a raw
socket, so that the XRootD client library of the test process keeps no connection or state
from the fixture); nginx answers an HTTP request (over TLS, verifying the certificate against
``ca_file``, for ``https``).

The XRootD client of the test process: :func:`xrootd_client_env` sets its environment so that
a stopped server makes reads fail within seconds and a restarted one is reached again at
once (:data:`XROOTD_CLIENT_ENV`). It must be in place before the process first connects to
the server: XRootD reads these settings when it opens its connection (stream) to a host and
port and keeps that stream, and its settings, for the life of the process. With XRootD's
defaults a read from a stopped server may retry for minutes (``ConnectionWindow`` 120 s,
``ConnectionRetry`` 5), and for 30 minutes after a failed connection (``StreamErrorWindow``
1800 s) every request to that server fails at once, restarted or not.

Not installed: installed with apt-get when running as root; where that is impossible,
:class:`Unavailable` says why. Installed but not starting (or not stopping on SIGTERM, or
dying on its own): :class:`Broken`, carrying the tail of the daemon's log.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import os
import pwd
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tests.cluster.single_node import _die_with_parent, _free_ports, _tails, _which
from tests.daemons import Broken, Unavailable, apt_install

__all__ = ["Broken", "Server", "Unavailable", "XROOTD_CLIENT_ENV", "serving", "xrootd_client_env"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
HOST = "127.0.0.1"
# scheme -> what it needs: (Debian package, the command it installs), ...
PACKAGES = {"root": (("xrootd-server", "xrootd"),), "http": (("nginx", "nginx"),),
            "https": (("nginx", "nginx"), ("openssl", "openssl"))}
# The https server's certificate: self-signed, for the address it listens on.
CERTIFICATE_DAYS = 2
# The unprivileged user xrootd runs as when we are root (it refuses to run as root).
XROOTD_USER = "nobody"
# XRootD's initial handshake (XProtocol.hh ClientInitHandShake: 0, 0, 0, 4, 2012) and the
# server's answer: streamid 0, status 0 (kXR_ok), length 8, protocol version, server type.
_HANDSHAKE = struct.pack(">5i", 0, 0, 0, 4, 2012)
# The one thread that forks the daemons, alive as long as this process: PR_SET_PDEATHSIG
# (tests/cluster/single_node.py's _die_with_parent) fires when the forking *thread* ends.
_LAUNCHER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-server-launcher")
# The XRootD client's settings (XrdCl's environment, seconds) for tests of outages: connect
# once, within 2 s; a request times out after 5 s; a failed connection is not remembered.
XROOTD_CLIENT_ENV = {"ConnectionWindow": 2, "ConnectionRetry": 1, "RequestTimeout": 5, "StreamErrorWindow": 0}


class Server:
    """One file server (a daemon this process started); see the module docstring.

    ``scheme`` is ``"root"``, ``"http"`` or ``"https"``; ``export`` the directory it serves;
    ``port`` its TCP port on 127.0.0.1; ``log`` its log file; ``directory`` where all its files
    are; ``ca_file`` the certificate a client must trust (``https``; else None); ``startup_s``
    how long the latest ``start`` took; ``pid`` the daemon's PID while running.
    """

    scheme: str = ""
    name: str = ""
    ca_file: Path | None = None

    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.export = directory / "export"
        self.log: Path = directory / f"{self.name}.log"
        self.access_log: Path | None = None
        self.startup_s = 0.0
        self._out = directory / f"{self.name}.out"  # the daemon's stdout and stderr
        self._proc: subprocess.Popen | None = None
        self._owner: tuple[int, int] | None = None  # (uid, gid) of the export's files, when root
        self._cwd = directory
        self.export.mkdir()
        self.export.chmod(0o755)

    # -- what tests use -------------------------------------------------------------------

    def url(self, relative: str) -> str:
        """The URL of ``export/relative``."""
        raise NotImplementedError

    def put(self, source: Path | str, relative: str) -> str:
        """Copy ``source`` to ``export/relative`` (replacing it atomically if there; creating
        directories), readable by the server; its URL."""
        target = self.export / _relative(relative)
        directory = target.parent
        missing = []
        while directory != self.export and not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for directory in reversed(missing):
            directory.mkdir()
            directory.chmod(0o755)
            self._chown(directory)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        partial.chmod(0o644)
        self._chown(partial)
        os.replace(partial, target)
        return self.url(relative)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    def start(self) -> None:
        """Start the daemon (a no-op while it runs) and wait until it answers.

        :class:`Broken` when it does not answer within START_TIMEOUT, or when it died on its
        own since the previous start (a crash is reported once; the next ``start`` restarts)."""
        if self._proc is not None:
            status = self._proc.poll()
            if status is None:
                return
            self._kill()  # what is left of it (nginx's workers)
            raise Broken(f"{self.name} (port {self.port}) exited with status {status} although "
                         f"nobody stopped it\n{self.log_tail()}")
        started = time.monotonic()
        deadline = started + START_TIMEOUT
        with self._out.open("ab") as sink:
            # Forked by the launcher thread: the daemon's death-with-parent signal comes when the
            # thread that forked it ends, and a test may call start() from a passing thread.
            self._proc = _LAUNCHER.submit(
                subprocess.Popen, self._command(), stdin=subprocess.DEVNULL, stdout=sink,
                stderr=subprocess.STDOUT, cwd=self._cwd, env=self._env(), start_new_session=True,
                preexec_fn=_die_with_parent, **self._user()).result()
        while not self._answers():
            status = self._proc.poll()
            if status is not None:
                self._kill()
                raise Broken(f"{self.name} did not start: it exited with status {status}\n"
                             f"(in {self.directory})\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise Broken(f"{self.name} did not answer on port {self.port} within "
                             f"{START_TIMEOUT:.0f} s (in {self.directory})\n{self.log_tail()}")
            time.sleep(0.05)
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM, then SIGKILL (its whole process group) after STOP_TIMEOUT; a no-op when
        stopped. Returns once the daemon has exited (its port then refuses connections).
        :class:`Broken` (after the kill) when SIGTERM was not enough."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is not None:
            _killpg(proc)
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _killpg(proc)
            raise Broken(f"{self.name} (PID {proc.pid}) ignored SIGTERM for {STOP_TIMEOUT:.0f} s and "
                         f"was killed\n{self.log_tail()}") from None
        # nginx's workers exit before its master; anything of the group left is a leak.
        _killpg(proc)

    def log_tail(self, lines: int = 25) -> str:
        return _tails((self.log, self._out), lines)

    # -- what the kinds of server define ------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.directory), "LANG": "C"}

    def _user(self) -> dict:
        return {}

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, *self._owner)

    def _kill(self) -> None:
        if self._proc is not None:
            _killpg(self._proc)
            self._proc = None

    def __repr__(self) -> str:
        state = f"PID {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.scheme}://{HOST}:{self.port} export={self.export} {state}>"


class _XRootD(Server):
    scheme = "root"
    name = "xrootd"
    instance = "tracerflow"

    def __init__(self, directory: Path, port: int):
        super().__init__(directory, port)
        self.admin = directory / "admin"
        self.admin.mkdir()
        logs = directory / "log"
        logs.mkdir()
        logs.chmod(0o755)
        # With -n NAME, xrootd writes the log -l gives into a NAME directory beside it, and
        # makes NAME in its working directory its home: the same directory.
        self._log_option = logs / "xrootd.log"
        self.log = logs / self.instance / "xrootd.log"
        self._cwd = logs
        if os.geteuid() == 0:
            user = pwd.getpwnam(XROOTD_USER)
            self._owner = (user.pw_uid, user.pw_gid)
            for path in (self.export, self.admin, logs):
                self._chown(path)

    def url(self, relative: str) -> str:
        return f"root://{HOST}:{self.port}/{self.export}/{_relative(relative)}"

    def _command(self) -> list[str]:
        # In the foreground (no -b): the PID is the daemon's.
        return [_which("xrootd"), "-p", str(self.port), "-l", str(self._log_option), "-a", str(self.admin),
                "-n", self.instance, str(self.export)]

    def _user(self) -> dict:
        if self._owner is None:
            return {}
        uid, gid = self._owner
        return {"user": uid, "group": gid, "extra_groups": []}

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(_HANDSHAKE)
                answer = b""
                while len(answer) < 16:
                    chunk = sock.recv(16 - len(answer))
                    if not chunk:
                        return False
                    answer += chunk
        except OSError:
            return False
        streamid, status, length = struct.unpack(">HHi", answer[:8])
        return (streamid, status, length) == (0, 0, 8)


class _Nginx(Server):
    scheme = "http"
    name = "nginx"

    def __init__(self, directory: Path, port: int):
        super().__init__(directory, port)
        listen = self._listen(directory)
        self.log = directory / "nginx-error.log"
        self.access_log = directory / "nginx-access.log"
        self.conf = directory / "nginx.conf"
        (directory / "tmp").mkdir()
        temp = " ".join(f"{kind}_temp_path {directory}/tmp;" for kind in ("client_body", "proxy", "fastcgi",
                                                                          "uwsgi", "scgi"))
        # As root, the workers run as nginx's built-in user (nobody): the export is world-readable.
        self.conf.write_text(f"""\
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {self.log} notice;
events {{ worker_connections 64; }}
http {{
    log_format ranges '$request_method $uri $http_range $status $body_bytes_sent';
    access_log {self.access_log} ranges;
    {temp}
    default_type application/octet-stream;
    server {{
        {listen}
        root {self.export};
    }}
}}
""")

    def _listen(self, directory: Path) -> str:
        """The server block's ``listen`` (and TLS) directives."""
        return f"listen {HOST}:{self.port};"

    def url(self, relative: str) -> str:
        return f"{self.scheme}://{HOST}:{self.port}/{quote(str(_relative(relative)))}"

    def _command(self) -> list[str]:
        # -e: the log of the start itself (else /var/log/nginx/error.log, before the config is read).
        return [_which("nginx"), "-c", str(self.conf), "-e", str(self.log)]

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=1.0)

    def _answers(self) -> bool:
        connection = self._connection()
        try:
            connection.request("HEAD", "/")
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return True


class _NginxTLS(_Nginx):
    scheme = "https"

    def _listen(self, directory: Path) -> str:
        self.ca_file = directory / "certificate.pem"
        key = directory / "key.pem"
        command = [_which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                   "-days", str(CERTIFICATE_DAYS), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                   "-keyout", str(key), "-out", str(self.ca_file)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0 or not self.ca_file.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
            raise Broken(f"{' '.join(command)} exited {proc.returncode}:\n{tail}")
        # The key stays 0600: nginx's master reads it, as the user that starts it, before it forks.
        self.ca_file.chmod(0o644)
        return (f"listen {HOST}:{self.port} ssl;\n"
                f"        ssl_certificate {self.ca_file};\n"
                f"        ssl_certificate_key {key};")

    def _connection(self) -> http.client.HTTPConnection:
        context = ssl.create_default_context(cafile=self.ca_file)  # only that certificate
        return http.client.HTTPSConnection(HOST, self.port, timeout=1.0, context=context)


_KINDS: dict[str, type[Server]] = {"root": _XRootD, "http": _Nginx, "https": _NginxTLS}


def _relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"not a path inside the export: {relative!r}")
    return path


def _killpg(proc: subprocess.Popen) -> None:
    """SIGKILL to the daemon's process group (its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _install(scheme: str) -> None:
    """The server's Debian packages with apt-get when missing; :class:`Unavailable` where that cannot be done."""
    missing = [(package, command) for package, command in PACKAGES[scheme] if _which(command) is None]
    if not missing:
        return
    packages = [package for package, _ in missing]
    commands = [command for _, command in missing]
    apt_install(packages, lambda: [command for command in commands if _which(command) is None],
                f"{' and '.join(commands)} {'is' if len(missing) == 1 else 'are'} not installed: "
                f"apt-get install {' '.join(packages)}")


@contextlib.contextmanager
def xrootd_client_env(values: dict[str, int] = XROOTD_CLIENT_ENV) -> Iterator[None]:
    """The XRootD client of this process with ``values`` in its environment while the block
    runs (for connections opened in it: see the module docstring); the previous values after."""
    from XRootD import client

    previous = {key: client.EnvGetInt(key) for key in values}
    for key, value in values.items():
        client.EnvPutInt(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            client.EnvPutInt(key, value)


@contextlib.contextmanager
def serving(scheme: str) -> Iterator[Server]:
    """A running server of ``scheme`` (``"root"``: xrootd, ``"http"`` and ``"https"``: nginx)
    while the block runs; see the module docstring. :class:`Unavailable` when it cannot run here,
    :class:`Broken` when it does not start or stop. Its directory is removed at the end
    unless something went wrong."""
    _install(scheme)
    kind = _KINDS[scheme]
    directory = Path(tempfile.mkdtemp(prefix=f"tracerflow-{kind.name}-{scheme}-"))
    directory.chmod(0o755)
    server = kind(directory, _free_ports(1)[0])
    try:
        server.start()
        yield server
    except BaseException:
        server._kill()
        raise
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":  # a manual check: start each, print their URLs, stop them.
    for scheme in sys.argv[1:] or list(_KINDS):
        with serving(scheme) as running:
            print(running, f"started in {running.startup_s:.2f} s", running.url("a/b.root"))
