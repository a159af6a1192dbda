"""Shared fixtures of the toy-detector tests: a mixed ttbar + zprime sample and a flat reader."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from tracerflow.toy import TREE_NAME, generate_sample

MIXED_SEED = 20240607
MIXED_JETS_PER_PROCESS = 100_000


def read_flat(paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """Read toy files into flat numpy arrays: per event, per jet (``jet_*``) and per track (``trk_*``)."""
    parts = []
    for path in paths:
        with uproot.open(path) as root_file:
            parts.append(root_file[TREE_NAME].arrays(library="ak"))
    events = ak.concatenate(parts)
    out = {}
    for name in events.fields:
        column = events[name]
        out[name] = ak.to_numpy(ak.flatten(column) if column.ndim > 1 else column)
    return out


@pytest.fixture(scope="session")
def read_toy() -> Callable[[Sequence[Path]], dict[str, np.ndarray]]:
    """The flat reader, as a fixture."""
    return read_flat


@pytest.fixture(scope="session")
def mixed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """A mixed sample: 1e5 ttbar and 1e5 zprime jets, several files each."""
    out = tmp_path_factory.mktemp("toy_mixed")
    return {
        process: generate_sample(process, MIXED_JETS_PER_PROCESS, 12_000, MIXED_SEED, f"mixed_{process}", out)
        for process in ("ttbar", "zprime")
    }


@pytest.fixture(scope="session")
def mixed(mixed_files: dict[str, list[Path]]) -> dict[str, dict[str, np.ndarray]]:
    """The mixed sample read back, flat, per process."""
    return {process: read_flat(paths) for process, paths in mixed_files.items()}
