"""Selection outputs get one dtype per kind of value, whatever the branch types of the file."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from tracerflow.events.build import build_events
from tracerflow.events.entries import EntryFilter
from tracerflow.io.selections_file import read_selection
from tracerflow.selections.apply import apply_selection, output_dtype
from tracerflow.templates.event import declared as declared_event
from tracerflow.templates.selection import declared as declared_selection

from .helpers import write_root

EVENT = {
    "leaves": {"flag": "flag", "met": "met"},
    "collections": {"jets": {"branches": {"pt": "jet_pt", "label": "jet_label"}}},
}
SELECTION = {
    "level": "jets",
    "cuts": {"pt": "jets.pt > 1"},
    "outputs": {"label": "jets.label", "twice": "jets.label * 2", "pt": "jets.pt", "met": "met", "flag": "flag",
                "high": "jets.pt > 5", "ratio": "jets.pt / met"},
}


def _events(tmp_path, name: str, int_type, float_type, flag_type, entry_filter: EntryFilter = EntryFilter()):
    """A ROOT file whose branches have the given types, and its events file."""
    n_events = 4
    counts = np.array([2, 0, 3, 1], dtype=np.int64)
    total = int(counts.sum())
    root = tmp_path / f"{name}.root"
    write_root(root, {
        "flag": (np.arange(n_events) % 2).astype(flag_type),
        "met": np.linspace(10, 40, n_events).astype(float_type),
        "jet_pt": ak.unflatten(np.linspace(0.5, 9.5, total).astype(float_type), counts),
        "jet_label": ak.unflatten((np.arange(total) % 3 * 2).astype(int_type), counts),
    }, tree="events")
    out = tmp_path / f"{name}.h5"
    build_events(root, out, declared_event(EVENT), sample="s", logical_file=root.name, tree="events",
                 config_digest="e", created_by="t", entry_filter=entry_filter)
    return out


def test_output_dtype_by_kind():
    assert output_dtype(np.zeros(2, bool)) == np.bool_
    for t in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64):
        assert output_dtype(np.zeros(2, t)) == np.int64
    for t in (np.float16, np.float32, np.float64):
        assert output_dtype(np.zeros(2, t)) == np.float32
    with pytest.raises(TypeError):
        output_dtype(np.zeros(2, "S3"))


def test_files_with_other_branch_types_store_the_same_output_dtypes(tmp_path):
    template = declared_selection(SELECTION)
    stored = {}
    for name, int_type, float_type, flag_type in (("a", np.uint8, np.float64, np.int16),
                                                  ("b", np.int32, np.float32, np.uint8)):
        events = _events(tmp_path, name, int_type, float_type, flag_type)
        out = tmp_path / f"sel_{name}.h5"
        apply_selection(events, out, template, config_digest="s", created_by="t", chunk_size=2)
        stored[name] = read_selection(out)
    a, b = stored["a"], stored["b"]
    dtypes = {k: v.dtype for k, v in a.items() if k.startswith("derived/")}
    assert dtypes == {k: v.dtype for k, v in b.items() if k.startswith("derived/")}
    assert dtypes["derived/label"] == np.int64 and dtypes["derived/high"] == np.bool_
    assert dtypes["derived/twice"] == np.int64 and dtypes["derived/flag"] == np.int64
    assert dtypes["derived/pt"] == np.float32 and dtypes["derived/met"] == np.float32
    assert dtypes["derived/ratio"] == np.float32
    np.testing.assert_array_equal(a["derived/label"], b["derived/label"])
    np.testing.assert_allclose(a["derived/pt"], b["derived/pt"], rtol=1e-6)


def test_file_without_events_stores_the_dtypes_of_its_kinds(tmp_path):
    template = declared_selection(SELECTION)
    full, empty = tmp_path / "sel_full.h5", tmp_path / "sel_empty.h5"
    apply_selection(_events(tmp_path, "full", np.uint8, np.float64, np.uint8), full, template,
                    config_digest="s", created_by="t")
    no_events = _events(tmp_path, "none", np.int16, np.float64, np.int32, EntryFilter(entry_list=()))
    apply_selection(no_events, empty, template, config_digest="s", created_by="t")
    got, want = read_selection(empty), read_selection(full)
    assert len(got["index/hash"]) == 0 and len(want["index/hash"]) > 0
    assert {k: v.dtype for k, v in got.items() if k.startswith("derived/")} == \
        {k: v.dtype for k, v in want.items() if k.startswith("derived/")}
