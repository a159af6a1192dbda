"""Faults of the file system: a full disk, a read-only or unwritable directory, a file where a
directory belongs.

Such a fault is the user's to fix, not a bug: :func:`fault_of` finds it behind any exception (h5py
raises it as an ``OSError`` with HDF5's own message), :func:`describe` says it in words, naming
the path (``disk full: cannot write /out/x.h5 (No space left on device)``), and writers raise
:class:`OutputError` naming their final path rather than a temporary one. :func:`unwritable`
checks an output directory before anything runs.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

#: errno -> the cause in words; an ``OSError`` with one of these is a fault of the file system.
CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's file size limit",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.ENOTDIR: "not a directory",
    errno.EEXIST: "exists already, where a directory is needed",
    errno.EISDIR: "is a directory",
    errno.EIO: "input/output error",
}
_HINTS = {
    errno.ENOSPC: "free space on that file system (or set project.output_dir to another one) and run again; "
                  "complete targets are kept",
    errno.EDQUOT: "free space within your quota (or set project.output_dir elsewhere) and run again; "
                  "complete targets are kept",
    errno.EFBIG: "raise the file size limit (ulimit -f) or set project.output_dir to another file system",
    errno.EROFS: "set project.output_dir to a writable directory, or remount that file system read-write",
    errno.EIO: "the disk or network file system reported an error: check it, then run again",
}
_NOT_ALLOWED = "make the directory writable for you, or set project.output_dir to a directory you can write"
_IN_THE_WAY = "a file is where tracerflow needs a directory: move it, or set project.output_dir elsewhere"


class OutputError(OSError):
    """Writing ``filename`` failed for a reason of the file system (``errno`` is one of :data:`CAUSES`);
    made as ``OutputError.of(errno, path)``."""

    @classmethod
    def of(cls, code: int, path: str | os.PathLike) -> "OutputError":
        return cls(code, os.strerror(code), str(path))

    def __str__(self) -> str:
        return f"{CAUSES.get(self.errno, self.strerror)}: cannot write {self.filename} ({self.strerror})"


def fault_of(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` of a file-system fault that ``exc`` is or was raised from (``raise ... from``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in CAUSES:
            return exc
        exc = exc.__cause__
    return None


def output_error(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """``exc``'s fault met writing ``path``: an :class:`OutputError` naming ``path`` when the fault
    names no file, or ``path`` or a temporary file of it; the fault itself when it names another
    file (an input that cannot be read, a directory that cannot be made); None when ``exc`` is no
    fault."""
    fault = fault_of(exc)
    if fault is None or isinstance(fault, OutputError):
        return fault
    named = fault.filename if isinstance(fault.filename, (str, os.PathLike)) else None
    if named is not None and not _is_temporary(Path(named), Path(path)):
        return fault
    return OutputError.of(fault.errno, path)


def _is_temporary(named: Path, path: Path) -> bool:
    """Whether ``named`` is ``path``, a temporary file of it (``.<name>.tmp-...`` beside it) or a
    file in such a temporary directory."""
    return named == path or any(part.parent == path.parent and part.name.startswith(f".{path.name}.tmp")
                                for part in (named, *named.parents))


def describe(fault: OSError, where: str | os.PathLike | None = None) -> str:
    """The fault in words, naming its path (``where`` when the error names none)."""
    if isinstance(fault, OutputError):
        return str(fault)
    path = fault.filename if fault.filename is not None else where
    cause = CAUSES.get(fault.errno, fault.strerror or "error")
    strerror = fault.strerror or os.strerror(fault.errno)
    if path is None:
        return f"{cause} ({strerror})"
    return f"{cause}: {path} ({strerror})"


def hint(fault: OSError) -> str:
    """What to do about the fault."""
    if fault.errno in (errno.EACCES, errno.EPERM):
        return _NOT_ALLOWED
    if fault.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return _IN_THE_WAY
    return _HINTS[fault.errno]


def refusal(root: str | os.PathLike, fault: OutputError) -> str:
    """Why nothing can be written to ``root``, from :func:`unwritable`'s fault."""
    what = {errno.ENOTDIR: "is not a directory", errno.EROFS: "is on a read-only file system",
            errno.EACCES: "is not writable (permission denied)"}.get(fault.errno, str(fault))
    return f"cannot write outputs to {root}: {fault.filename} {what}"


def unwritable(*directories: str | os.PathLike) -> OutputError | None:
    """Why outputs cannot be written in each of ``directories`` (made when needed), or None.

    The nearest existing one of each directory and its parents must be a directory this process
    may write to: a file there, a read-only file system or missing permissions are reported with
    that path. Nothing is created or changed."""
    for directory in directories:
        nearest = Path(directory)
        while not nearest.exists() and not nearest.is_symlink() and nearest != nearest.parent:
            nearest = nearest.parent
        if not nearest.is_dir():
            return OutputError.of(errno.ENOTDIR, nearest)
        if not os.access(nearest, os.W_OK | os.X_OK):
            read_only = os.statvfs(nearest).f_flag & os.ST_RDONLY
            return OutputError.of(errno.EROFS if read_only else errno.EACCES, nearest)
    return None
