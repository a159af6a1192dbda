"""What a finished HDF5 target says about itself, kept between runs so that a scheduler need not
open every file again: the status index of a directory of targets.

Deciding whether a target is done means reading four root attributes (:data:`STATUS_ATTRS` of
:mod:`tracerflow.io.h5target`): ~0.8 ms a file, 25 s for the 30,000 targets of an analysis with
10,000 input files, each time it is run. Targets are only ever renamed into place whole (never
changed where they lie), so one version of a file (inode, size, modification and change time)
always holds the same attributes; the index keeps them by version.

Layout: one JSON file per directory of targets, in the user's cache, not among the outputs (it
differs from run to run, while two runs of a config leave byte-identical outputs):
``$TRACERFLOW_STATUS_DIR/<16 hex digits of the directory's path>.json``, by default
``~/.tracerflow/status/``::

    {"layout": "tracerflow.status", "version": 1, "directory": "<absolute path>",
     "files": {"<name>": [inode, size, mtime_ns, ctime_ns, {"schema": ..., "schema_version": ...,
                                                            "complete": ..., "config_digest": ...}]}}

Contract with its neighbours:

* :mod:`tracerflow.io.h5target` asks :func:`lookup` before it opens a target and tells
  :func:`remember` what it read or has just renamed into place. An entry counts only while the
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
VERSION = 1

Version = tuple[int, int, int, int]

_lock = threading.Lock()
_read: dict[str, dict[str, list]] = {}  # directory -> its index as read from disk
_learnt: dict[str, dict[str, list]] = {}  # directory -> entries this process learnt


def version_of(stat: os.stat_result) -> Version:
    """A file version's key: inode, size, modification and change time (ns)."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def lookup(path: Path, version: Version) -> dict[str, Any] | None:
    """The status attributes recorded for ``path`` at ``version``; None when there are none."""
    directory, name = os.path.abspath(path.parent), path.name
    with _lock:
        entry = _learnt.get(directory, {}).get(name)
        if entry is None:
            entry = _index(directory).get(name)
    if entry is None or tuple(entry[:4]) != version:
        return None
    return dict(entry[4])


def remember(path: Path, version: Version, attrs: dict[str, Any]) -> None:
    """Keep ``attrs`` as what ``path`` holds at ``version`` (saved by :func:`save`)."""
    if not _plain(attrs):
        return
    with _lock:
        _learnt.setdefault(os.path.abspath(path.parent), {})[path.name] = [*version, dict(attrs)]


def save() -> None:
    """Merge what this process learnt into each directory's index on disk. An index that cannot
    be written (a read-only output, a full disk) is left as it is: it only saves time."""
    with _lock:
        learnt = {directory: dict(entries) for directory, entries in _learnt.items()}
        _learnt.clear()
    for directory, entries in learnt.items():
        try:
            present = set(os.listdir(directory))
        except OSError:
            continue
        merged = {**_load(directory), **entries}
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


def _plain(attrs: dict[str, Any]) -> bool:
    """Whether ``attrs`` survive JSON unchanged (strings, ints, bools, None)."""
    return all(value is None or isinstance(value, (str, int, bool)) for value in attrs.values())
