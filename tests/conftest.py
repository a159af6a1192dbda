"""Shared fixtures: paths to the real ROOT files and small toy configs."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project root (real ntuples nobody here wrote)."""
    if not (SHARED_DATA / "uproot-HZZ.root").is_file():
        pytest.fail(f"real test files missing: expected them in {SHARED_DATA}")
    return SHARED_DATA
