"""SampleTracer iteration: order, content, lazy batched reads, EventStart/EventStop, slices."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.events.build import build_events
from tracerflow.events.entries import EntryFilter
from tracerflow.hashing import hash_hex
from tracerflow.io.events_file import EventsFile
from tracerflow.templates import event as event_templates
from tracerflow.tracer import SampleTracer


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, int, int]]:
    """Every EventsFile.read call as (file name, start, stop)."""
    calls: list[tuple[str, int, int]] = []
    original = EventsFile.read

    def counting(self, start=0, stop=None, fields=None):
        calls.append((self.path.name, start, stop))
        return original(self, start, stop, fields)

    monkeypatch.setattr(EventsFile, "read", counting)
    return calls


def events_tracer(samples, **settings) -> SampleTracer:
    tracer = SampleTracer(**settings)
    for s in samples.values():
        tracer.AddEvent(s.events)
    return tracer


def expected(samples) -> list[tuple[str, str, int, float, int]]:
    out = []
    for s in samples.values():
        with EventsFile(s.events) as f:
            batch = f.read()
        for i, h in enumerate(batch.index["hash"]):
            out.append((hash_hex(h), s.name, int(batch.index["entry"][i]), float(batch.event["weight"][i]),
                        int(batch.tables["jets"].counts[i])))
    return out


def test_iteration_order_and_content(samples):
    tracer = events_tracer(samples)
    got = [(ev.hash, ev.sample, ev.entry, float(ev.weight), len(ev.jets)) for ev in tracer]
    assert got == expected(samples)


def test_batched_lazy_reads(samples, reads):
    tracer = SampleTracer(Chunks=3)
    tracer.AddEvent(samples["ttbar"].events)
    assert len(tracer) == 10 and 0 not in tracer and reads == []
    batches = tracer.batches()
    first = next(batches)
    assert [len(first)] == [3] and len(reads) == 1
    assert [len(b) for b in batches] == [3, 3, 1]
    assert len(reads) == 4
    assert [(lo, hi) for _, lo, hi in reads] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    reads.clear()
    assert len(list(tracer)) == 10 and len(reads) == 4
    reads.clear()
    tracer.AddEvent(samples["zjets"].events)
    assert len(list(tracer)) == 17
    assert [name for name, _, _ in reads] == ["ttbar.events.h5"] * 4 + ["zjets.events.h5"] * 3
    assert tracer.held("events").size == 0 and tracer._held["events"] == {}
    assert all(isinstance(v, np.ndarray) for v in tracer.index.tables["events"].columns.values())


def test_event_start_stop(samples, reads):
    tracer = events_tracer(samples, Chunks=4, EventStart=8, EventStop=13)
    everything = expected(samples)
    reads.clear()
    assert [ev.hash for ev in tracer] == [e[0] for e in everything[8:13]]
    assert [(name, lo, hi) for name, lo, hi in reads] == [("ttbar.events.h5", 8, 10), ("zjets.events.h5", 0, 3)]
    tracer.EventStart = None
    assert [ev.hash for ev in tracer] == [e[0] for e in everything[:13]]
    assert len(tracer) == 17


def test_slices_by_position(samples, reads):
    tracer = events_tracer(samples, Chunks=100)
    everything = expected(samples)
    reads.clear()
    assert [ev.hash for ev in tracer[5:12]] == [e[0] for e in everything[5:12]]
    assert len(reads) == 2
    assert [ev.hash for ev in tracer[::4]] == [e[0] for e in everything[::4]]
    assert [ev.entry for ev in tracer[-2:]] == [5, 6]
    assert tracer[30:] == []


def test_views_and_release_event(samples):
    tracer = events_tracer(samples)
    with EventsFile(samples["ttbar"].events) as f:
        batch = f.read()
    ev = tracer[int(batch.index["hash"][0])]
    record = ev.release_event()
    assert (record.hash, record.sample, record.file, record.entry) == (ev.hash, "ttbar", "ttbar/f0.root", 0)
    assert record.weight == batch.event["weight"][0] and record.run == batch.event["run"][0]
    jets = batch.tables["jets"]
    n_jets = int(jets.counts[0])
    assert n_jets == 3 and len(record.jets) == 3
    for name, values in jets.fields.items():
        assert [getattr(j, name) for j in record.jets] == values[:n_jets].tolist()
    tracks = batch.tables["tracks"]
    n_tracks = int(tracks.counts[:n_jets].sum())
    assert [t.pt for t in record.tracks] == tracks.fields["pt"][:n_tracks].tolist()
    assert [len(j.tracks) for j in record.jets] == tracks.counts[:n_jets].tolist()
    assert [t.d0 for j in record.jets for t in j.tracks] == tracks.fields["d0"][:n_tracks].tolist()
    assert [t.pt for t in record.jets[1].tracks] == [t.pt for t in ev.jets[1].tracks]
    assert "jets" in dir(ev) and "pt" in dir(ev.jets[0]) and "tracks" in dir(ev.jets[0])
    assert tracer[int(batch.index["hash"][1])].release_event().jets == []
    with pytest.raises(AttributeError, match="no field or child collection 'btag'"):
        ev.jets[0].btag


def test_real_hzz_file(shared_data, tmp_path):
    spec = {"leaves": {"weight": "EventWeight", "met_px": "MET_px"},
            "collections": {"jets": {"branches": {"px": "Jet_Px", "py": "Jet_Py", "pz": "Jet_Pz", "e": "Jet_E"},
                                     "four_vector": "pxpypze"}}}
    out = tmp_path / "hzz.h5"
    build_events(shared_data / "uproot-HZZ.root", out, event_templates.declared(spec), sample="hzz", logical_file="uproot-HZZ.root",
                 tree="events", config_digest="d", created_by="test", entry_filter=EntryFilter(event_stop=60))
    tracer = SampleTracer(Chunks=25, EventStop=50)
    tracer.AddEvent(out)
    events = list(tracer)
    assert len(tracer) == 60 and len(events) == 50
    with_jets = [ev for ev in events if ev.jets]
    assert with_jets and all(j.pt == pytest.approx(np.hypot(j.px, j.py), rel=1e-5) for ev in with_jets for j in ev.jets)
