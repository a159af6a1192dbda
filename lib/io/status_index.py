"""What a file says about itself, kept between runs so that a scheduler need not open every file
again: the status index of a directory (of targets, or of input files).

Deciding whether a target is done means reading four root attributes (:data:`STATUS_ATTRS` of
:mod:`tracerflow.io.h5target`): ~0.8 ms a file, 25 s for the 30,000 targets of an analysis with
10,000 input files, each time it is run. Targets are only ever renamed into place whole (never
changed where they lie), so one version of a file (inode, size, modification and change time)
always holds the same attributes; the index keeps them by version. The same goes for an input
file's identity (:func:`tracerflow.events.source.file_identity`: its size, ROOT UUID and a hash
of its first 4 KiB and last 64 KiB), which every run reads for every input, ~0.5 ms a file (two
range requests to a server for a remote input: its "directory" is the URL up to its last ``/``,
its version ``(0, size, modification time or HTTP validator, 0)``).

Layout: one JSON file per directory of targets, in the user's cache, not among the outputs (it
differs from run to run, while two runs of a config leave byte-identical outputs):
``$TRACERFLOW_STATUS_DIR/<16 hex digits of the directory's path>.json``, by default
``~/.tracerflow/status/``::

    {"layout": "tracerflow.status", "version": 2, "directory": "<absolute path>",
     "files": {"<name>": [inode, size, mtime_ns, ctime_ns,
                          {"status": {"schema": ..., "schema_version": ..., "complete": ..., "config_digest": ...}}
                          or {"identity": {"size": ..., "uuid": ..., "ends": ...}}]}}

Contract with its neighbours:

* :mod:`tracerflow.io.h5target` asks :func:`lookup` before it opens a target and tells
  :func:`remember` what it read or has just renamed into place; :mod:`tracerflow.events.source`
  does the same with an input's identity. An entry counts only while the
  file's version is the recorded one; anything else (a replaced, touched or rewritten file, an
  index that cannot be read, is of another layout or of another directory) means the file is
  read as before.
* Only :func:`save` writes, and only ``tracerflow run`` calls it, once, at its end: it merges what
  this process learnt into each directory's index (as it is on disk then, so that processes
  saving side by side lose nothing but, at worst, each other's entries, which are read again next
  time), drops the entries of files no longer there, and replaces the index atomically. An index
  that cannot be written is skipped: it only saves time. ``tracerflow show`` and everything else
  only read it.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from tracerflow.io.atomic import write_atomic

ENV_DIR = "TRACERFLOW_STATUS_DIR"
DEFAULT_DIR = "~/.tracerflow/status"
LAYOUT = "tracerflow.status"
VERSION = 2

Version = tuple[int, int, int, int]
STATUS = "status"  # a target's status attributes (tracerflow.io.h5target)
IDENTITY = "identity"  # an input file's identity (tracerflow.events.source)

_lock = threading.Lock()
_read: dict[str, dict[str, list]] = {}  # directory -> its index as read from disk
_learnt: dict[str, dict[str, list]] = {}  # directory -> entries this process learnt


def version_of(stat: os.stat_result) -> Version:
    """A file version's key: inode, size, modification and change time (ns)."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def lookup(path: str | os.PathLike, version: Version, kind: str = STATUS) -> dict[str, Any] | None:
    """What was recorded of ``kind`` for ``path`` at ``version``; None when nothing was."""
    directory, name = _where(path)
    with _lock:
        entry = _learnt.get(directory, {}).get(name)
        if entry is None or kind not in entry[4]:
            entry = _index(directory).get(name)
    if entry is None or tuple(entry[:4]) != version or not isinstance(entry[4].get(kind), dict):
        return None
    return dict(entry[4][kind])


def remember(path: str | os.PathLike, version: Version, facts: dict[str, Any], kind: str = STATUS) -> None:
    """Keep ``facts`` of ``kind`` as what ``path`` holds at ``version`` (saved by :func:`save`)."""
    if not _plain(facts):
        return
    directory, name = _where(path)
    with _lock:
        entries = _learnt.setdefault(directory, {})
        entry = entries.get(name)
        kinds = dict(entry[4]) if entry is not None and tuple(entry[:4]) == version else {}
        kinds[kind] = dict(facts)
        entries[name] = [*version, kinds]


def _where(path: str | os.PathLike) -> tuple[str, str]:
    """(absolute directory, name) of ``path``; of a URL, the part before its last ``/`` and after."""
    if isinstance(path, str) and "://" in path:
        directory, _, name = path.rpartition("/")
        return directory, name
    directory, _, name = os.path.abspath(path).rpartition(os.sep)
    return directory or os.sep, name


def save() -> None:
    """Merge what this process learnt into each directory's index on disk. An index that cannot
    be written (a read-only output, a full disk) is left as it is: it only saves time."""
    with _lock:
        learnt = {directory: dict(entries) for directory, entries in _learnt.items()}
        _learnt.clear()
    for directory, entries in learnt.items():
        merged = {**_load(directory), **entries}
        if "://" in directory:  # a server's directory is not listed: its entries stay until replaced
            present = set(merged)
        else:
            try:
                present = set(os.listdir(directory))
            except OSError:
                continue
        files = {name: entry for name, entry in sorted(merged.items()) if name in present}
        try:
            write_atomic(index_path(directory), json.dumps(
                {"layout": LAYOUT, "version": VERSION, "directory": directory, "files": files}, separators=(",", ":")))
        except OSError:
            continue
        with _lock:
            _read[directory] = files


def forget() -> None:
    """Drop what this process read and learnt (tests; a process that changed directory roots)."""
    with _lock:
        _read.clear()
        _learnt.clear()


def index_path(directory: str | os.PathLike) -> Path:
    """Where the index of ``directory`` (an absolute path) is kept."""
    root = Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()
    name = hashlib.blake2b(os.fsencode(directory), digest_size=8).hexdigest()
    return root / f"{name}.json"


def _index(directory: str) -> dict[str, list]:
    if directory not in _read:
        _read[directory] = _load(directory)
    return _read[directory]


def _load(directory: str) -> dict[str, list]:
    try:
        with open(index_path(directory), "rb") as fh:
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return {}
    if (not isinstance(data, dict) or data.get("layout") != LAYOUT or data.get("version") != VERSION
            or data.get("directory") != directory):
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    return {name: entry for name, entry in files.items() if _entry(entry)}


def _entry(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 5 and all(isinstance(v, int) for v in entry[:4])
            and isinstance(entry[4], dict))


def _plain(facts: dict[str, Any]) -> bool:
    """Whether ``facts`` survive JSON unchanged (strings, ints, bools, None)."""
    return all(value is None or isinstance(value, (str, int, bool)) for value in facts.values())
