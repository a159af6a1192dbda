"""The ``slurm`` session fixture: a real single-node Slurm cluster (tests/cluster/single_node.py
says what it provides), started once per test session and stopped at its end. Where Slurm cannot
run (not root, not installable) the tests using it skip, saying why; installed but not starting
(or not stopping) is a test error carrying the tails of the daemons' logs."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..daemons import session_daemon
from .single_node import Slurm, single_node

__all__ = ["Slurm", "slurm"]


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """A running single-node Slurm; see tests/cluster/single_node.py for what it provides."""
    yield from session_daemon(single_node())
