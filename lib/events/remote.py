"""Input files kept where clusters keep them: ``root://`` (XRootD) and ``http(s)://`` URLs, read in
place through fsspec (``fsspec-xrootd`` with the ``xrootd`` bindings, ``aiohttp``: the ``remote``
extra), never copied to scratch first.

What a remote input offers is what :mod:`tracerflow.events.source` needs of any input: a version
(one ``stat``: size, and the modification time or the HTTP validator), byte ranges (the header
checks and the file's identity read its first 4 KiB and last 64 KiB, as for a local file, so that
an input keeps its identity and every digest downstream when it moves from disk to a server), and
a file uproot opens by URL. Every call to the server goes through :func:`retrying`: a failure is
tried again ``remote.retries`` times, ``remote.retry_wait`` seconds apart (growing), with a fresh
connection, and then fails naming the URL (:class:`RemoteError`). A missing file is not retried.

Contract with its neighbours: :mod:`tracerflow.config.load` asks :func:`is_url`,
:func:`url_problem` and :func:`missing_extra` when it validates ``samples.<name>.files`` (nothing
is contacted while a config is loaded); :mod:`tracerflow.events.source` calls :func:`stat`,
:func:`read_range` and :func:`open_options` with the validated ``remote`` block as an
:class:`Access`. Nothing here imports luigi.
"""
from __future__ import annotations

import hashlib
import importlib.util
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: URL schemes read as remote inputs -> the fsspec protocol that reads them.
SCHEMES = {"root": "root", "roots": "root", "xroot": "root", "http": "http", "https": "https"}
#: The modules each protocol needs (pip names in the message of :func:`missing_extra`).
_NEEDS = {"root": (("fsspec_xrootd", "fsspec-xrootd"), ("XRootD", "xrootd")), "http": (("aiohttp", "aiohttp"),),
          "https": (("aiohttp", "aiohttp"),)}


class RemoteError(OSError):
    """A remote input that cannot be reached or read, after the configured retries. Names the URL."""


@dataclass(frozen=True)
class Access:
    """How remote inputs are read: the validated ``remote`` block."""

    retries: int
    retry_wait: float
    timeout: float

    @classmethod
    def of(cls, block: dict) -> "Access":
        return cls(retries=block["retries"], retry_wait=block["retry_wait"], timeout=block["timeout"])

    @classmethod
    def default(cls) -> "Access":
        """The ``remote`` block's defaults, as lib/config/schema.py states them (for a caller with no config)."""
        from tracerflow.config.schema import BLOCKS
        from tracerflow.config.spec import Context

        return cls.of(BLOCKS.fields["remote"].default_value("remote", Context("<defaults>")))


def is_url(location: str | Any) -> bool:
    """Whether ``location`` (a ``samples.<name>.files`` entry) names a remote file."""
    return isinstance(location, str) and location.partition("://")[0].lower() in SCHEMES and "://" in location


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as an input's address (None: nothing), without contacting it."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return f"{url}: no server named (expected {parts.scheme}://host[:port]/path)"
    try:
        parts.port
    except ValueError:
        return f"{url}: the port is not a number"
    if parts.scheme.lower() in ("root", "roots", "xroot") and not parts.path.startswith("//"):
        return (f"{url}: an XRootD path starts with a double slash after the server "
                f"({parts.scheme}://{parts.netloc}//absolute/path)")
    if not parts.path.strip("/") or parts.path.endswith("/"):
        return f"{url}: names a directory, not a file"
    if any(c in parts.path for c in "*?["):
        return f"{url}: wildcards are not expanded in URLs; list the files (e.g. the output of xrdfs ls)"
    if parts.query or parts.fragment:
        return f"{url}: a query or fragment is not part of a file's address"
    return None


def missing_extra(url: str) -> str | None:
    """The packages reading ``url`` needs that are not installed, as an instruction (None: all there)."""
    protocol = SCHEMES[url.partition("://")[0].lower()]
    missing = [pip for module, pip in _NEEDS[protocol] if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return (f"reading {protocol}:// inputs needs {' and '.join(missing)}: "
            f"pip install 'tracerflow[remote]' (or: pip install {' '.join(missing)})")


def preload_xrootd() -> None:
    """Load XRootD's Python bindings now, when they are installed. Loaded after TensorFlow they
    crash the process (SIGSEGV in their shared library's initialisation; loaded before, both
    work), so whatever is about to load TensorFlow calls this first."""
    if importlib.util.find_spec("XRootD") is not None:
        import XRootD.client  # noqa: F401


def split(location: str) -> tuple[str, list[str]]:
    """``(origin, path components)`` of a local path (origin ``""``) or a URL (``scheme://netloc``, and
    a leading ``""`` component for XRootD's absolute paths): what logical file names are cut from."""
    if not is_url(location):
        return "", location.split("/")
    parts = urllib.parse.urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}", parts.path[1:].split("/")


def join(origin: str, components: list[str]) -> str:
    """The inverse of :func:`split`."""
    path = "/".join(components)
    return f"{origin}/{path}" if origin else path


def _filesystem(url: str, access: Access):
    """A new fsspec filesystem (not one of fsspec's cached instances, which may hold a connection
    an outage broke) and the path of ``url`` on it."""
    import fsspec

    return fsspec.core.url_to_fs(url, skip_instance_cache=True, **open_options(url, access))


def open_options(url: str, access: Access) -> dict[str, Any]:
    """The fsspec options (for ``uproot.open``) that bound each request to ``access.timeout``."""
    protocol = SCHEMES[url.partition("://")[0].lower()]
    if protocol == "root":
        _xrootd_client(access)
        return {"timeout": max(1, round(access.timeout))}
    import aiohttp

    return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=access.timeout,
                                                                sock_read=access.timeout)}}


_xrootd_set: Access | None = None


def _xrootd_client(access: Access) -> None:
    """Bound the XRootD client's own waits (by default it retries a connection for minutes, which
    would hide the configured retries, and for 30 minutes after a failed connection fails every
    request to that server at once, StreamErrorWindow): one connection attempt per try, requests
    within the timeout, a server reached again as soon as it answers. XRootD reads these when it
    opens a connection to a server and keeps them for that connection's life."""
    global _xrootd_set
    if _xrootd_set == access:
        return
    from XRootD import client

    wait = max(1, round(access.timeout))
    for key, value in (("ConnectionRetry", 1), ("ConnectionWindow", wait), ("RequestTimeout", wait),
                       ("StreamTimeout", wait), ("StreamErrorWindow", 0)):
        client.EnvPutInt(key, value)
    _xrootd_set = access


def _missing(err: BaseException) -> bool:
    """Whether ``err`` says the file does not exist (then retrying would not help): XRootD's
    kXR_NotFound (3011), or fsspec's HTTP FileNotFoundError when what it stands for is a 404
    (fsspec raises the same error for a refused connection, chained to the connection's error)."""
    if "[3011]" in str(err):
        return True
    link: BaseException | None = err
    while isinstance(link, FileNotFoundError):
        link = link.__cause__ or link.__context__
        if link is None:
            return True
    return getattr(link, "status", None) == 404


def describe(err: BaseException) -> str:
    """One line on what went wrong, from the error and what caused it (fsspec's HTTP error that
    only repeats the URL says it through its cause)."""
    cause = err.__cause__ or err.__context__
    text = " ".join(str(err).split())
    if cause is not None and str(cause) and (not text or "://" in text and " " not in text):
        err, text = cause, " ".join(str(cause).split())
    elif cause is not None and str(cause) and str(cause) not in text:
        text += f" ({' '.join(str(cause).split())})"
    return text if isinstance(err, RemoteError) else f"{type(err).__name__}: {text or 'no message'}"


def retrying(url: str, what: str, access: Access, call: Callable[[bool], T],
             on_retry: Callable[[int, BaseException], None] | None = None,
             final: tuple[type[BaseException], ...] = ()) -> T:
    """``call(fresh)`` until it returns, at most ``1 + access.retries`` times (``fresh``: open a new
    connection, true from the second try on); then :class:`RemoteError` naming ``url`` and ``what``
    was being done. A file that does not exist fails at once (FileNotFoundError naming the URL), and
    so do the ``final`` errors (what the data says, which another try would say again)."""
    for attempt in range(access.retries + 1):
        try:
            return call(attempt > 0)
        except (KeyboardInterrupt, SystemExit, MemoryError, *final):
            raise
        except Exception as err:
            if _missing(err):
                raise FileNotFoundError(f"{url}: no such file on the server") from None
            if attempt == access.retries:
                tries = f"{access.retries + 1} tries" if access.retries else "1 try, no retries configured"
                raise RemoteError(f"{url}: {what} failed after {tries} ({describe(err)})") from None
            if on_retry is not None:
                on_retry(attempt + 1, err)
            time.sleep(access.retry_wait * (attempt + 1))
    raise AssertionError("unreachable")


def drop_handles(fs: Any) -> None:
    """Close (or, over a broken connection, forget) the file handles fsspec-xrootd keeps open in
    ``fs``: it closes them at the interpreter's exit otherwise, printing a traceback for each
    one an outage broke."""
    if fs is None:
        return
    try:
        fs.invalidate_cache()
    except Exception:  # closing over the broken connection failed: the handles are dead anyway
        cache = getattr(getattr(fs, "_readonly_filehandle_cache", None), "_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _once(url: str, access: Access, op: Callable[[Any, str], T]) -> T:
    """``op(fs, path)`` on a filesystem of its own, whose handles are closed after it."""
    fs, path = _filesystem(url, access)
    try:
        return op(fs, path)
    finally:
        drop_handles(fs)


def stat(url: str, access: Access) -> tuple[int, int]:
    """``(size, version)`` of the file at ``url``: its size in bytes and a number that changes when
    the file is replaced (its modification time in ns, else a hash of the server's ETag or
    Last-Modified; 0 when the server gives none). One request."""
    def info(fresh: bool) -> dict:
        return _once(url, access, lambda fs, path: fs.info(path))

    facts = retrying(url, "stat", access, info)
    size = facts.get("size")
    if size is None:
        raise RemoteError(f"{url}: the server does not say how large the file is (no Content-Length); "
                          "tracerflow reads inputs by byte ranges and needs it")
    if facts.get("mtime"):
        return int(size), int(float(facts["mtime"]) * 1_000_000_000)
    validator = facts.get("ETag") or facts.get("Last-Modified") or ""
    return int(size), int.from_bytes(hashlib.blake2b(str(validator).encode(), digest_size=7).digest(), "big")


def read_range(url: str, start: int, stop: int, access: Access) -> bytes:
    """Bytes ``[start, stop)`` of the file at ``url`` (one range request, retried)."""
    def cat(fresh: bool) -> bytes:
        return _once(url, access, lambda fs, path: fs.cat_file(path, start=start, end=stop))

    return retrying(url, f"reading bytes [{start}, {stop})", access, cat)
