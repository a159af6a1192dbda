"""Reproducibility: files depend only on (seed, sample, file index), byte for byte."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import uproot

from tracerflow.toy import TREE_NAME, generate_file, generate_sample, plan_files

N_JETS = 6_000
EVENTS_PER_FILE = 400


def _bytes(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    first = generate_sample(
        "ttbar", N_JETS, EVENTS_PER_FILE, 11, "det", tmp_path / "a", progress=lambda d, t: calls.append((d, t))
    )
    second = generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, 11, "det", tmp_path / "b")
    assert len(first) >= 3
    plans = plan_files("ttbar", N_JETS, EVENTS_PER_FILE, 11, "det")
    assert calls == [(sum(p.n_jets for p in plans[:i + 1]), N_JETS) for i in range(len(first))]
    assert calls[-1] == (N_JETS, N_JETS)
    assert [p.name for p in first] == [p.name for p in second]
    assert _bytes(first) == _bytes(second)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [p.name for p in first]

    plan = plan_files("ttbar", N_JETS, EVENTS_PER_FILE, 11, "det")[1]
    alone = generate_file("ttbar", plan, 11, "det", tmp_path / "c")
    assert alone.read_bytes() == first[1].read_bytes()
    assert uproot.writing._cascade.datetime is datetime


def test_different_seed_or_sample_changes_content(read_toy, tmp_path: Path) -> None:
    base = read_toy(generate_sample("zprime", 3_000, 10_000, 1, "det", tmp_path / "a"))
    other_seed = read_toy(generate_sample("zprime", 3_000, 10_000, 2, "det", tmp_path / "b"))
    other_sample = read_toy(generate_sample("zprime", 3_000, 10_000, 1, "det2", tmp_path / "c"))
    for other in (other_seed, other_sample):
        assert len(other["jet_pt"]) == len(base["jet_pt"]) == 3_000
        assert not np.array_equal(other["jet_pt"][:100], base["jet_pt"][:100])


def test_chunking_changes_baskets_not_content(read_toy, tmp_path: Path) -> None:
    plan = plan_files("zprime", 62_000, 10**9, 4, "chunks")[0]
    assert plan.n_events > 20_000
    coarse = generate_file("zprime", plan, 4, "chunks", tmp_path / "coarse")
    fine = generate_file("zprime", plan, 4, "chunks", tmp_path / "fine", chunk_events=10_000)
    with uproot.open(coarse) as a, uproot.open(fine) as b:
        assert a[TREE_NAME]["trk_d0"].num_baskets < b[TREE_NAME]["trk_d0"].num_baskets
    left, right = read_toy([coarse]), read_toy([fine])
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)
