"""Writing a file so that a crash never leaves it half-written under its final name.

A write goes to a temporary name beside the final path and is renamed into place once it is
whole. Every writer of tracerflow names its temporary files one way, :func:`temporary_path`:
``.<name>.tmp-<pid>``, or ``.<name>.tmp-<pid>-<thread id>`` where threads of one process may write
side by side; a temporary directory (the toy's ROOT files, Resample's scratch arrays) is named the
same way. :data:`TEMPORARY` recognises them all, so what a killed run left is found by name and
its writing process (:mod:`tracerflow.io.stale` removes it when the task runs again).
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Iterator

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?:-(?P<thread>\d+))?$")


def temporary_path(path: str | os.PathLike, *, thread: bool = False) -> Path:
    """Where a write of ``path`` goes before it is renamed into place: ``.<name>.tmp-<pid>`` beside
    it, with ``-<thread id>`` appended for ``thread`` (writers whose threads may write side by side)."""
    path = Path(path)
    writer = f"{os.getpid()}-{threading.get_ident()}" if thread else str(os.getpid())
    return path.with_name(f".{path.name}.tmp-{writer}")


def temporary_of(name: str) -> tuple[str, int] | None:
    """The final name and the writing process of the temporary file name ``name``; None for any other name."""
    match = TEMPORARY.match(name)
    return (match["name"], int(match["pid"])) if match else None


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """The temporary path to write ``path``'s content to; renamed to ``path`` when the block ends
    normally, removed when it raises (an earlier file at ``path`` then stays as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes | memoryview) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file."""
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
