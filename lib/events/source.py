"""Chunked reading of one tree with uproot, with clear errors for unusable files; a file is a local
path or a URL (:mod:`tracerflow.events.remote`: read in place, each request retried)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from tracerflow.events import remote
from tracerflow.io import status_index


log = logging.getLogger("tracerflow")


class SourceError(RuntimeError):
    """A ROOT input that is missing, unreadable, lacks the tree or a branch. Names file and key."""


FINGERPRINT_HEAD = 4096
FINGERPRINT_TAIL = 65536


def file_identity(path: str | os.PathLike, access: remote.Access | None = None) -> dict | None:
    """What tells one version of an input file from another; None while the file does not exist.

    Its size, the UUID ROOT writes into every file it creates (a file replaced under the same
    name is a new input) and a hash of its first 4 KiB and last 64 KiB (ROOT's header, with the
    end-of-file and free-segment pointers, and the key list and streamers ROOT writes last: what a
    file updated in place rewrites). The modification time is not part of it (a copy or a touch
    gives the same identity, and reruns of a config stay byte-identical), but it is part of the
    cache key (inode, size, modification and change time; kept between runs by
    :mod:`tracerflow.io.status_index`): whenever one of them changes, the file is read again. See
    docs/decisions.md.

    A URL's identity is read the same way, by two range requests (so a file keeps its identity,
    and every digest downstream, when it moves to a server); its cache key is its size and the
    server's modification time or validator (:func:`tracerflow.events.remote.stat`). A server that
    cannot be reached raises :class:`~tracerflow.events.remote.RemoteError`."""
    if remote.is_url(path):
        url, access = str(path), access or remote.Access.default()
        if url in _unreachable:  # once per process: a scheduler asks for it once per stage
            raise _unreachable[url]
        try:
            size, version = remote.stat(url, access)
            return _remote_identity(url, size, version, access)
        except FileNotFoundError:
            return None
        except remote.RemoteError as err:
            _unreachable[url] = err
            raise
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _identity(str(path), *status_index.version_of(stat))


#: URLs whose identity could not be read (after the retries) in this process, and why.
_unreachable: dict[str, remote.RemoteError] = {}


@functools.lru_cache(maxsize=65536)
def _remote_identity(url: str, size: int, version: int, access: remote.Access) -> dict:
    key = (0, size, version, 0)
    known = status_index.lookup(url, key, status_index.IDENTITY)
    if known is not None:
        return known
    digest = hashlib.blake2b(digest_size=8)
    head = remote.read_range(url, 0, min(FINGERPRINT_HEAD, size), access)
    digest.update(head)
    digest.update(remote.read_range(url, max(size - FINGERPRINT_TAIL, 0), size, access))
    identity = {"size": size, "uuid": root_uuid(head), "ends": digest.hexdigest()}
    status_index.remember(url, key, identity, status_index.IDENTITY)
    return identity


@functools.lru_cache(maxsize=65536)
def _identity(path: str, *version: int) -> dict:
    known = status_index.lookup(path, version, status_index.IDENTITY)  # type: ignore[arg-type]
    if known is not None:
        return known
    size = version[1]
    digest = hashlib.blake2b(digest_size=8)
    head = b""
    try:
        with open(path, "rb") as f:
            head = f.read(FINGERPRINT_HEAD)
            digest.update(head)
            f.seek(max(size - FINGERPRINT_TAIL, 0))
            digest.update(f.read(FINGERPRINT_TAIL))
    except OSError:  # unreadable: BuildEvents says so by name (and nothing is kept of it)
        return {"size": size, "uuid": root_uuid(head), "ends": digest.hexdigest()}
    identity = {"size": size, "uuid": root_uuid(head), "ends": digest.hexdigest()}
    status_index.remember(path, version, identity, status_index.IDENTITY)  # type: ignore[arg-type]
    return identity


def root_uuid(head: bytes) -> str | None:
    """The UUID in a ROOT file's header (its first bytes), or None when ``head`` is no ROOT header.

    After the signature ``root`` and the format version come the header's pointers, 4-byte or,
    from version 1,000,000 on, some of them 8-byte; then the UUID's own version (2 bytes) and its
    16 bytes: at offset 47 in a small file's header, 59 in a large one's.
    """
    if head[:4] != b"root" or len(head) < 8:
        return None
    start = 59 if int.from_bytes(head[4:8], "big") >= 1_000_000 else 47
    if len(head) < start + 16:
        return None
    return str(uuid.UUID(bytes=head[start:start + 16]))


def header_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a ROOT file, found in its header alone: not a ROOT file at
    all, a header that makes no sense, or fewer bytes than the header records (a truncated copy or
    an interrupted transfer); None when the header is sound. Never quotes the file's bytes."""
    with open(path, "rb") as f:
        return _header_problem(os.path.getsize(path), f.read(20))


def _header_problem(size: int, head: bytes) -> str | None:
    """:func:`header_problem` of a file of ``size`` bytes that starts with ``head`` (20 bytes)."""
    why = "cannot be read as a ROOT file"
    if size == 0:
        return f"{why}: it is empty (0 bytes)"
    if head[:4] != b"root":
        return f"{why}: it does not start with ROOT's signature 'root' (is it a ROOT file?)"
    version = int.from_bytes(head[4:8], "big") if len(head) >= 8 else 0
    width = 8 if version >= 1_000_000 else 4
    if len(head) < 12 + width:
        return f"{why}: it is truncated ({size} bytes, too few for the file header)"
    begin, end = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:12 + width], "big")
    if size < end:
        return f"{why}: it is truncated ({size} bytes, but its header records {end}: an interrupted copy or write?)"
    if not 0 < begin <= end:
        return f"{why}: its header is corrupt (data said to start at byte {begin} and end at {end})"
    return None


def _one_line(err: BaseException) -> str:
    """``Type: message`` of a library's error on one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


class RootSource:
    """One tree of one ROOT file, read by entry lists in chunks."""

    def __init__(self, path: str | Path, tree: str, threads: int = 1, access: remote.Access | None = None) -> None:
        import uproot

        self.url = str(path) if remote.is_url(path) else None
        self.path: Path | str = self.url or Path(path)
        self.tree_name = tree
        self.access = access or remote.Access.default()
        self._file = None
        if self.url is None:
            if not self.path.exists():
                raise SourceError(f"{self.path}: no such file")
            problem = header_problem(self.path)
        else:
            try:
                size, _ = remote.stat(self.url, self.access)
                problem = _header_problem(size, remote.read_range(self.url, 0, min(20, size), self.access))
            except FileNotFoundError:
                raise SourceError(f"{self.url}: no such file on the server") from None  # (RemoteError: unreachable)
        if problem:
            raise SourceError(f"{self.path}: {problem}")
        self._executor = uproot.ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        if self.url is None:
            self._open(fresh=False)
        else:
            self._remote("opening the file", None)
        self.num_entries = int(self.tree.num_entries)

    def _open(self, fresh: bool) -> None:
        """Open the file and its tree (again, on a new connection when ``fresh``)."""
        import uproot

        if self._file is not None:
            if fresh:
                remote.drop_handles(getattr(self._file.file.source, "_fs", None))
            with contextlib.suppress(Exception):
                self._file.close()
        options = {} if self.url is None else {**remote.open_options(self.url, self.access),
                                                "skip_instance_cache": fresh}
        try:
            self._file = uproot.open(self.path, array_cache=None, **options)
        except Exception as err:
            if self.url is not None:
                raise  # retried by the caller, then named
            raise SourceError(f"{self.path}: cannot be read as a ROOT file ({_one_line(err)})") from None
        try:
            self.tree = self._file[self.tree_name]
        except Exception:
            keys = sorted({k.split(";")[0] for k in self._file.keys()})
            self._file.close()
            raise SourceError(f"{self.path}: no tree {self.tree_name!r} (has {keys})") from None

    def _remote(self, what: str, call):
        """``call()`` on the open file (None: just open it); for a URL retried (on a fresh
        connection, the file opened again) as :func:`tracerflow.events.remote.retrying` says, then
        failing naming the URL."""
        if self.url is None:
            return call()

        def attempt(fresh: bool):
            if fresh or call is None:
                self._open(fresh=fresh)
            return None if call is None else call()

        try:
            return remote.retrying(self.url, what, self.access, attempt, on_retry=self._say_retry, final=(SourceError,))
        except FileNotFoundError as err:
            raise SourceError(str(err)) from None

    def _say_retry(self, attempt: int, err: BaseException) -> None:
        log.warning("%s: %s; trying again (%d of %d)", self.url, remote.describe(err), attempt, self.access.retries)

    def __enter__(self) -> "RootSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        if self._file is not None:
            if self.url is not None:
                remote.drop_handles(getattr(self._file.file.source, "_fs", None))
            self._file.close()

    def has_branch(self, branch: str) -> bool:
        """Whether the tree has ``branch``."""
        return branch in self.tree.keys(recursive=True)

    def require_branches(self, branches: Sequence[str], key: str) -> None:
        """Raise :class:`SourceError` naming the file, the missing branches and the config key."""
        have = set(self.tree.keys(recursive=True))
        missing = [b for b in branches if b not in have]
        if missing:
            raise SourceError(
                f"{self.path}: tree {self.tree_name!r} has no branch {missing[0]!r}"
                + (f" (nor {missing[1:]})" if len(missing) > 1 else "")
                + f", needed by {key}"
            )

    def branch_kind(self, branch: str) -> str:
        """What ``branch`` holds per entry: ``number``, ``numbers`` (a list of numbers), or anything
        else in words with its type, from the branch's metadata (nothing is read); TTree branches
        and RNTuple fields alike."""
        import awkward as ak

        item = self.tree[branch]
        typename = getattr(item, "typename", "?")
        try:
            form = (item.to_akform()[0].contents[0] if hasattr(item, "to_akform")
                    else item.interpretation.awkward_form(item.file))
        except Exception:  # uproot has no reader for this type
            return f"values of type {typename}, which tracerflow cannot read"

        def numeric(f: object) -> bool:
            return (isinstance(f, ak.forms.NumpyForm) and f.inner_shape == ()
                    and f.primitive not in ("datetime64", "timedelta64") and not f.parameters)

        if numeric(form):
            return "number"
        if isinstance(form, (ak.forms.ListOffsetForm, ak.forms.ListForm)):
            if form.parameters.get("__array__") in ("string", "bytestring"):
                return f"a string per entry ({typename})"
            if numeric(form.content):
                return "numbers"
            return f"nested lists or records per entry ({typename})"
        if isinstance(form, (ak.forms.RegularForm, ak.forms.NumpyForm)):
            return f"a fixed-size array per entry ({typename})"
        return f"values of type {typename} that are not numbers or lists of numbers"

    def require_kinds(self, roles: dict[str, tuple[bool, str]], key: str) -> None:
        """Raise :class:`SourceError` when a branch does not hold what ``key`` reads it as: one number
        per entry, or a list of numbers (``roles``: branch -> (list wanted, what it is read as))."""
        for branch, (jagged, role) in roles.items():
            kind = self.branch_kind(branch)
            want = "numbers" if jagged else "number"
            if kind == want:
                continue
            held = {"number": "one number per entry", "numbers": "a list of numbers per entry"}.get(kind, kind)
            need = "a list of numbers per entry" if jagged else "one number per entry"
            fix = {"numbers": ": declare it in a collection's branches", "number":
                   ": declare it as a leaf, or as a member of a fixed-size collection"}.get(kind, "")
            raise SourceError(f"{self.path}: tree {self.tree_name!r}: branch {branch!r} holds {held}, but {key} "
                              f"reads it as {role}, which needs {need}{fix}")

    def read(self, branches: Sequence[str], entries: np.ndarray) -> dict:
        """Arrays of ``branches`` at the sorted ``entries`` (awkward for jagged, numpy for flat)."""
        if len(entries) == 0:
            lo = hi = 0
        else:
            lo, hi = int(entries[0]), int(entries[-1]) + 1
        kwargs = {}
        if self._executor is not None:
            kwargs = {"decompression_executor": self._executor, "interpretation_executor": self._executor}
        try:
            arrays = self._remote(
                f"reading entries [{lo}, {hi}) of tree {self.tree_name!r}",
                lambda: self.tree.arrays(list(branches), entry_start=lo, entry_stop=hi, library="ak", how=dict,
                                         **kwargs))
        except (SourceError, remote.RemoteError):
            raise
        except Exception as err:
            raise SourceError(f"{self.path}: tree {self.tree_name!r}: reading entries [{lo}, {hi}) of "
                              f"{', '.join(map(repr, branches))} failed ({_one_line(err)})") from None
        if len(entries) != hi - lo:
            picks = np.asarray(entries, dtype=np.int64) - lo
            arrays = {k: v[picks] for k, v in arrays.items()}
        return arrays
