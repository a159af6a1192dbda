"""Shared fixtures: paths to the real ROOT files and small toy configs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracerflow.events.remote import preload_xrootd

# XRootD's bindings crash a process that loads them after TensorFlow, which a test module imports
# when it is collected: loaded first, for the remote-input tests of this same process.
preload_xrootd()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project root (real ntuples nobody here wrote)."""
    if not (SHARED_DATA / "uproot-HZZ.root").is_file():
        pytest.fail(f"real test files missing: expected them in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def status_index_dir(tmp_path_factory) -> Path:
    """The status index (tracerflow.io.status_index) of this session's runs, in and out of
    process, kept apart from the user's ~/.tracerflow/status."""
    from tracerflow.io.status_index import ENV_DIR

    directory = tmp_path_factory.mktemp("status-index")
    before = os.environ.get(ENV_DIR)
    os.environ[ENV_DIR] = str(directory)
    yield directory
    if before is None:
        os.environ.pop(ENV_DIR, None)
    else:
        os.environ[ENV_DIR] = before
