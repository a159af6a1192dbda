"""File planning: exact jet totals, events per file, and replayable multiplicities."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.toy import PROCESSES, file_multiplicities, plan_files


@pytest.mark.parametrize("process", ["ttbar", "zprime"])
@pytest.mark.parametrize("n_jets", [1, 2, 3, 7, 12_345, 100_000])
def test_plan_honours_n_jets_and_events_per_file(process: str, n_jets: int) -> None:
    plans = plan_files(process, n_jets, 500, seed=3, sample="plan")
    assert sum(p.n_jets for p in plans) == n_jets
    assert [p.index for p in plans] == list(range(len(plans)))
    assert [p.name for p in plans] == [f"plan_{i:04d}.root" for i in range(len(plans))]
    assert all(p.n_events == 500 for p in plans[:-1]) and 1 <= plans[-1].n_events <= 500
    assert [p.first_event for p in plans] == [500 * i for i in range(len(plans))]
    counts = np.concatenate([file_multiplicities(process, p, 3, "plan") for p in plans])
    assert counts.sum() == n_jets
    assert np.all(counts[:-1] >= 2) and counts[-1] >= 1
    for p in plans:
        assert file_multiplicities(process, p, 3, "plan").sum() == p.n_jets


def test_plan_is_deterministic_and_a_prefix_stream() -> None:
    assert plan_files("ttbar", 50_000, 1000, 1, "s") == plan_files("ttbar", 50_000, 1000, 1, "s")
    assert plan_files("ttbar", 50_000, 1000, 1, "s") != plan_files("ttbar", 50_000, 1000, 2, "s")
    assert plan_files("ttbar", 50_000, 1000, 1, "s") != plan_files("ttbar", 50_000, 1000, 1, "t")
    small = plan_files("ttbar", 10_000, 10**9, 1, "s")[0]
    large = plan_files("ttbar", 50_000, 10**9, 1, "s")[0]
    a = file_multiplicities("ttbar", small, 1, "s")
    b = file_multiplicities("ttbar", large, 1, "s")
    np.testing.assert_array_equal(a[:-1], b[: len(a) - 1])


@pytest.mark.parametrize("process", ["ttbar", "zprime"])
def test_multiplicity_follows_process(process: str) -> None:
    plan = plan_files(process, 200_000, 10**9, 5, "mult")[0]
    counts = file_multiplicities(process, plan, 5, "mult")[:-1]
    expected = 2 + PROCESSES[process].extra_jets_mean
    assert counts.min() >= 2
    assert abs(counts.mean() - expected) < 0.02 * expected


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        plan_files("ttbar", 0, 10, 1, "s")
    with pytest.raises(ValueError):
        plan_files("ttbar", 10, 0, 1, "s")
    with pytest.raises(ValueError):
        plan_files("wjets", 10, 10, 1, "s")
