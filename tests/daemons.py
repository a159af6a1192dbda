"""What the fixtures that start real daemons (tests/cluster: Slurm and MUNGE; tests/remote: xrootd
and nginx) share: the two ways a daemon can be missing, installing Debian packages with apt-get,
and a session fixture that skips or fails accordingly."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


class Unavailable(Exception):
    """The daemon cannot run here (not root, not installed and not installable): tests skip."""


class Broken(Exception):
    """The daemon is installed but did not start, did not stop cleanly or died on its own: the
    message carries the tail of its log."""


def apt_install(packages: list[str], still_missing: Callable[[], list[str]], why: str) -> None:
    """``apt-get install`` of ``packages`` (``why`` says what is missing); :class:`Unavailable`
    where that cannot be done, :class:`Broken` when ``still_missing()`` names commands after it."""
    if os.geteuid() != 0:
        raise Unavailable(f"{why} (not root)")
    if subprocess.run(["sh", "-c", "command -v apt-get"], capture_output=True).returncode != 0:
        raise Unavailable(f"{why} (no apt-get here)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
            raise Unavailable(f"{why}; `{' '.join(cmd)}` failed:\n{tail}")
    missing = still_missing()
    if missing:
        raise Broken(f"apt-get installed {' '.join(packages)} but there is still no {' and '.join(missing)}")


def session_daemon(context: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """Yield what ``context`` starts, for a session fixture: skip when it is :class:`Unavailable`,
    fail (without a traceback) when it is :class:`Broken` on the way in or out."""
    try:
        started = context.__enter__()
    except Unavailable as why:
        pytest.skip(str(why))
    except Broken as why:
        pytest.fail(str(why), pytrace=False)
    try:
        yield started
    finally:
        try:
            context.__exit__(None, None, None)
        except Broken as why:
            pytest.fail(str(why), pytrace=False)
