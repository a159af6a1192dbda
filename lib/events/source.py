"""Chunked reading of one tree with uproot, with clear errors for unusable files."""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np


class SourceError(RuntimeError):
    """A ROOT input that is missing, unreadable, lacks the tree or a branch. Names file and key."""


FINGERPRINT_HEAD = 4096
FINGERPRINT_TAIL = 65536


def file_identity(path: str | os.PathLike) -> dict | None:
    """What tells one version of an input file from another; None while the file does not exist.

    Its size, the UUID ROOT writes into every file it creates (a file replaced under the same
    name is a new input) and a hash of its first 4 KiB and last 64 KiB (ROOT's header, with the
    end-of-file and free-segment pointers, and the key list and streamers ROOT writes last: what a
    file updated in place rewrites). The modification time is not part of it (a copy or a touch
    gives the same identity, and reruns of a config stay byte-identical), but it is the cache key:
    whenever size or modification time change, the file is read again. See docs/decisions.md."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _identity(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _identity(path: str, size: int, mtime_ns: int) -> dict:
    import uproot

    try:
        with uproot.open(path) as f:
            uuid = str(f.file.uuid)
    except Exception:  # not a ROOT file: BuildEvents says so by name; size and content still identify it
        uuid = None
    digest = hashlib.blake2b(digest_size=8)
    try:
        with open(path, "rb") as f:
            digest.update(f.read(FINGERPRINT_HEAD))
            f.seek(max(size - FINGERPRINT_TAIL, 0))
            digest.update(f.read(FINGERPRINT_TAIL))
    except OSError:  # unreadable: BuildEvents says so by name
        pass
    return {"size": size, "uuid": uuid, "ends": digest.hexdigest()}


class RootSource:
    """One tree of one ROOT file, read by entry lists in chunks."""

    def __init__(self, path: str | Path, tree: str, threads: int = 1) -> None:
        import uproot

        self.path = Path(path)
        self.tree_name = tree
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file")
        try:
            self._file = uproot.open(self.path, array_cache=None)
        except Exception as err:
            raise SourceError(f"{self.path}: cannot be read as a ROOT file ({type(err).__name__}: {err})") from None
        try:
            self.tree = self._file[tree]
        except Exception:
            keys = sorted({k.split(";")[0] for k in self._file.keys()})
            self._file.close()
            raise SourceError(f"{self.path}: no tree {tree!r} (has {keys})") from None
        self.num_entries = int(self.tree.num_entries)
        self._executor = uproot.ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def __enter__(self) -> "RootSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
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
            arrays = self.tree.arrays(list(branches), entry_start=lo, entry_stop=hi, library="ak", how=dict, **kwargs)
        except Exception as err:
            raise SourceError(f"{self.path}: reading entries [{lo}, {hi}) failed ({type(err).__name__}: {err})") from None
        if len(entries) != hi - lo:
            picks = np.asarray(entries, dtype=np.int64) - lo
            arrays = {k: v[picks] for k, v in arrays.items()}
        return arrays
