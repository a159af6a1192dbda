"""The ``slurm`` session fixture: a real single-node Slurm cluster (tests/cluster/single_node.py
says what it provides), started once per test session and stopped at its end. Where Slurm cannot
run (not root, not installable) the tests using it skip, saying why; installed but not starting
(or not stopping) is a test error carrying the tails of the daemons' logs."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .single_node import Broken, Slurm, Unavailable, single_node

__all__ = ["Slurm", "slurm"]


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """A running single-node Slurm; see tests/cluster/single_node.py for what it provides."""
    cluster = single_node()
    try:
        started = cluster.__enter__()
    except Unavailable as why:
        pytest.skip(str(why))
    except Broken as why:
        pytest.fail(str(why), pytrace=False)
    try:
        yield started
    finally:
        try:
            cluster.__exit__(None, None, None)
        except Broken as why:
            pytest.fail(str(why), pytrace=False)
