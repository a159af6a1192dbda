"""Fixtures of the unit tests (builders live in helpers.py)."""
from __future__ import annotations

import pytest

from .helpers import make_index, small_batch, write_root


@pytest.fixture
def batch():
    return small_batch()


@pytest.fixture
def index_of():
    return make_index


@pytest.fixture
def root_writer():
    return write_root
