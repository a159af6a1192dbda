"""Entry filters: which entries of a tree BuildEvents reads."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.events.entries import EntryFilter, select_entries

# run and event number of the entries of a fake 10-entry tree
RUNS = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
EVENTS = np.array([10, 11, 12, 13, 10, 11, 12, 10, 11, 12])


class FakeReader:
    """Stands in for the run/event branches; records which entries were asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, entries):
        self.calls.append(np.asarray(entries).copy())
        return RUNS[entries], EVENTS[entries]


def sel(flt, n=10, reader=None):
    out = select_entries(n, flt, reader)
    assert out.dtype == np.int64
    assert np.all(np.diff(out) > 0)
    return out.tolist()


def test_default_is_everything():
    assert sel(EntryFilter()) == list(range(10))
    assert EntryFilter().is_trivial
    assert not EntryFilter(n_skip=1).is_trivial
    assert EntryFilter(run_event_branches=("r", "e")).is_trivial


@pytest.mark.parametrize(
    "start, stop, expected",
    [(None, None, list(range(10))), (3, None, list(range(3, 10))), (None, 4, [0, 1, 2, 3]), (2, 5, [2, 3, 4]),
     (5, 5, []), (7, 3, []), (8, 100, [8, 9]), (20, None, []), (-5, 2, [0, 1]), (None, -1, []), (0, 0, [])],
)
def test_event_start_stop(start, stop, expected):
    assert sel(EntryFilter(event_start=start, event_stop=stop)) == expected


def test_entry_list_and_skip_list():
    assert sel(EntryFilter(entry_list=(7, 2, 2, 15, -1))) == [2, 7]
    assert sel(EntryFilter(entry_list=())) == []
    assert sel(EntryFilter(skip_entry_list=(0, 9, 42))) == list(range(1, 9))
    assert sel(EntryFilter(entry_list=(1, 2, 3), skip_entry_list=(2,))) == [1, 3]
    assert sel(EntryFilter(event_start=2, event_stop=6, entry_list=(1, 2, 5, 6))) == [2, 5]


def test_run_event_list():
    reader = FakeReader()
    got = sel(EntryFilter(run_event_list=((2, 11), (3, 12), (9, 9))), reader=reader)
    assert got == [5, 9]
    assert len(reader.calls) == 1


def test_skip_run_event_list():
    got = sel(EntryFilter(skip_run_event_list=((1, 10), (2, 10), (3, 10))), reader=FakeReader())
    assert got == [1, 2, 3, 5, 6, 8, 9]


def test_run_event_pairs_are_pairs_not_separate_lists():
    # (1, 11) selects only run 1 event 11, not every event 11 nor every event of run 1
    assert sel(EntryFilter(run_event_list=((1, 11),)), reader=FakeReader()) == [1]
    # large event numbers in different runs do not alias
    runs, events = np.array([1, 2]), np.array([2**39, 2**39])
    got = select_entries(2, EntryFilter(run_event_list=((2, 2**39),)), lambda e: (runs[e], events[e]))
    assert got.tolist() == [1]


def test_run_event_reader_sees_only_entries_left_by_earlier_filters():
    reader = FakeReader()
    got = sel(EntryFilter(event_start=2, event_stop=8, skip_entry_list=(4,), run_event_list=((1, 12), (2, 10), (2, 12))),
              reader=reader)
    assert got == [2, 6]
    assert reader.calls[0].tolist() == [2, 3, 5, 6, 7]


def test_run_event_list_and_skip_list_together():
    got = sel(EntryFilter(run_event_list=((1, 10), (1, 11), (2, 10)), skip_run_event_list=((1, 11),)), reader=FakeReader())
    assert got == [0, 4]


def test_run_event_list_needs_a_reader():
    with pytest.raises(ValueError, match="run/event list needs the run and event branches"):
        select_entries(10, EntryFilter(run_event_list=((1, 10),)))
    assert EntryFilter(run_event_list=()).needs_run_event
    assert EntryFilter(skip_run_event_list=((1, 2),)).needs_run_event
    assert not EntryFilter(skip_run_event_list=()).needs_run_event


def test_reader_not_called_when_nothing_is_left():
    reader = FakeReader()
    assert sel(EntryFilter(event_start=10, run_event_list=((1, 10),)), reader=reader) == []
    assert reader.calls == []


def test_n_skip_applies_last():
    assert sel(EntryFilter(n_skip=3)) == list(range(3, 10))
    assert sel(EntryFilter(event_start=4, n_skip=2)) == [6, 7, 8, 9]
    assert sel(EntryFilter(skip_entry_list=(0, 1), n_skip=2)) == [4, 5, 6, 7, 8, 9]
    assert sel(EntryFilter(skip_run_event_list=((1, 10), (1, 11)), n_skip=1), reader=FakeReader()) == list(range(3, 10))
    assert sel(EntryFilter(n_skip=10)) == []
    assert sel(EntryFilter(n_skip=50)) == []


def test_combination_of_everything():
    flt = EntryFilter(event_start=1, event_stop=9, entry_list=(1, 2, 3, 5, 6, 8, 9), skip_entry_list=(3,),
                      run_event_list=((1, 11), (1, 12), (2, 11), (2, 12), (3, 11)), skip_run_event_list=((2, 12),),
                      n_skip=1)
    # range 1..8 -> entry_list 1 2 3 5 6 8 -> skip 3 -> run/event list keeps 1 2 5 6 8 -> skip (2, 12) drops 6
    # -> n_skip drops 1
    assert sel(flt, reader=FakeReader()) == [2, 5, 8]


def test_empty_tree():
    assert sel(EntryFilter(), n=0) == []
    assert sel(EntryFilter(n_skip=2, event_start=1), n=0) == []
