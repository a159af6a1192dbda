"""SampleTracer: AnalysisG's event index re-done over tracerflow's HDF5 caches, lazily.

The tracer maps each event hash to (sample, file, entry) and to its rows in the registered
events, graphs and selections files. It keeps only numpy index arrays; iteration reads the
events files ``Chunks`` events at a time, and RestoreX / FlushX load and drop cache rows on
request. DumpTracer writes the index and settings to a schema-versioned HDF5 file.

Decisions: events iterate in registration order (file by file, rows in file order) and
positions (``tracer[i:j]``, EventStart/EventStop) count in that order; an event already
indexed from another file keeps its first location; ``a + b`` starts with nothing held in
memory while ``a += b`` keeps what ``a`` holds; ``release_selection`` is None only when no
registered selections file was evaluated on the event's (sample, file). Threads, kFolds,
Epochs, Optimizer and Scheduler are carried (and dumped) for the training stages.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from tracerflow.hashing import hash_hex, parse_hash
from tracerflow.io.h5target import H5Writer, SchemaMismatch, check_schema
from tracerflow.tracer import caches
from tracerflow.tracer.caches import Held
from tracerflow.tracer.index import KINDS, TracerIndex
from tracerflow.tracer.settings import Settings
from tracerflow.tracer.views import Chunk, Event

SCHEMA = "tracerflow.tracer"
SCHEMA_VERSION = 1
OPEN_FILES = 8
HashLike = int | str | np.integer
DEFAULT_NAMES = {"events": "events.h5", "graphs": "graphs.h5", "selections": "selections.h5"}


def _setting(name: str) -> property:
    """A tracer attribute that reads and validates one field of its Settings."""

    def get(self: "SampleTracer") -> Any:
        return getattr(self._settings, name)

    def set_(self: "SampleTracer", value: Any) -> None:
        self._settings = self._settings.updated(**{name: value})

    return property(get, set_, doc=f"The {name} setting (see tracerflow.tracer.settings.Settings).")


class SampleTracer:
    """Index of events by hash over events / graphs / selections HDF5 caches; nothing loaded until asked.

    Settings (Threads, Chunks, EventStart, EventStop, kFolds, Epochs, Optimizer, Scheduler,
    ProjectName, OutputDirectory) are attributes and keyword arguments.
    """

    Threads = _setting("Threads")
    Chunks = _setting("Chunks")
    EventStart = _setting("EventStart")
    EventStop = _setting("EventStop")
    kFolds = _setting("kFolds")
    Epochs = _setting("Epochs")
    Optimizer = _setting("Optimizer")
    Scheduler = _setting("Scheduler")
    ProjectName = _setting("ProjectName")
    OutputDirectory = _setting("OutputDirectory")

    def __init__(self, **settings: Any) -> None:
        self._settings = Settings().updated(**settings)
        self.index = TracerIndex()
        self._held: dict[str, dict[int, Held]] = {kind: {} for kind in KINDS}
        self._readers: OrderedDict[tuple[str, int], Any] = OrderedDict()

    @property
    def settings(self) -> Settings:
        """The settings as a frozen dataclass."""
        return self._settings

    @property
    def hashes(self) -> np.ndarray:
        """Event hashes (uint64) in iteration order, read-only."""
        view = self.index.tables["events"]["hash"].view()
        view.flags.writeable = False
        return view

    def AddEvent(self, path: str | os.PathLike) -> None:
        """Register an events file: index its events by hash (idempotent for a file already added)."""
        self._absorb(TracerIndex.from_file("events", path))

    def AddGraph(self, path: str | os.PathLike) -> None:
        """Register a graphs file: record where each event's graphs are."""
        self._absorb(TracerIndex.from_file("graphs", path))

    def AddSelections(self, path: str | os.PathLike) -> None:
        """Register a selections file: record each event's passing rows and the samples it covers."""
        self._absorb(TracerIndex.from_file("selections", path))

    def _absorb(self, other: TracerIndex) -> None:
        """Merge ``other`` into the index, leaving it untouched if a collision is found."""
        merged = self.index.copy()
        merged.merge(other)
        self.index = merged

    def DumpTracer(self, path: str | os.PathLike | None = None) -> Path:
        """Write index, settings and registered paths atomically (default <OutputDirectory>/<ProjectName>/tracer.h5)."""
        path = Path(path) if path is not None else self._default_path("tracer.h5")
        text = self._settings.to_json()
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        with H5Writer(path, SCHEMA, SCHEMA_VERSION, digest, "SampleTracer.DumpTracer",
                      attrs={"settings": text, "n_events": len(self)}) as writer:
            self.index.dump(writer)
        return path

    def RestoreTracer(self, path: str | os.PathLike | None = None) -> None:
        """Read a tracer file back: its settings replace these, its index is merged into this one."""
        path = Path(path) if path is not None else self._default_path("tracer.h5")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such tracer file")
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise SchemaMismatch(f"{path}: not an HDF5 file, cannot restore a tracer from it ({err})") from None
        with f:
            check_schema(f, SCHEMA, SCHEMA_VERSION)
            settings = Settings.from_json(f.attrs["settings"])
            index = TracerIndex.load(f)
        missing = [p for kind in KINDS for p in index.paths[kind] if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"{path}: registered cache file(s) no longer exist: {missing}")
        self._absorb(index)
        self._settings = settings

    def _default_path(self, name: str) -> Path:
        return Path(self.OutputDirectory) / self.ProjectName / name

    def RestoreEvents(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Load the columns of these events (default all) into memory."""
        self._restore("events", hashes)

    def RestoreGraphs(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Load the graphs of these events (default all with graphs) into memory."""
        self._restore("graphs", hashes)

    def RestoreSelections(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Load the passing selection rows of these events (default all) into memory."""
        self._restore("selections", hashes)

    def FlushEvents(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Drop these events' columns (default all) from memory."""
        self._flush("events", hashes)

    def FlushGraphs(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Drop these events' graphs (default all) from memory."""
        self._flush("graphs", hashes)

    def FlushSelections(self, hashes: Iterable[HashLike] | HashLike | None = None) -> None:
        """Drop these events' selection rows (default all) from memory."""
        self._flush("selections", hashes)

    def DumpEvents(self, path: str | os.PathLike | None = None) -> Path:
        """Write the events held in memory into one events file (default <OutputDirectory>/<ProjectName>/events.h5)."""
        path = Path(path) if path is not None else self._default_path(DEFAULT_NAMES["events"])
        parts = [(self.index.paths["events"][s], held.data) for s, held in sorted(self._held["events"].items())]
        caches.write_events(path, parts, self.index.samples, self.index.files)
        return path

    def DumpGraphs(self, path: str | os.PathLike | None = None) -> Path:
        """Write the graphs held in memory into one graphs file (default .../graphs.h5)."""
        path = Path(path) if path is not None else self._default_path(DEFAULT_NAMES["graphs"])
        parts = []
        for source, held in sorted(self._held["graphs"].items()):
            reader = self._reader("graphs", source)
            attrs = {k: reader.attrs[k] for k in ("template", "precision") if k in reader.attrs}
            parts.append((self.index.paths["graphs"][source], held.data, caches.graph_names(reader), attrs))
        caches.write_graphs(path, parts, self.index.samples, self.index.files)
        return path

    def DumpSelections(self, path: str | os.PathLike | None = None) -> Path:
        """Write the selection rows held in memory into one selections file (default .../selections.h5)."""
        path = Path(path) if path is not None else self._default_path(DEFAULT_NAMES["selections"])
        parts = [(self.index.paths["selections"][s], held.data, self._reader("selections", s))
                 for s, held in sorted(self._held["selections"].items())]
        cover = self.index.cover
        sources = np.isin(cover["source"], list(self._held["selections"]))
        covers = [(self.index.samples[int(s)], self.index.files[int(f)])
                  for s, f in zip(cover["sample"][sources], cover["file"][sources])]
        caches.write_selections(path, parts, self.index.samples, self.index.files, covers)
        return path

    def held(self, kind: str = "events") -> np.ndarray:
        """Sorted unique hashes of the events whose ``kind`` rows are held in memory."""
        ops = caches.KINDS[kind]
        parts = [ops.hashes(held.data) for held in self._held[kind].values()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    def _restore(self, kind: str, hashes: Iterable[HashLike] | HashLike | None) -> None:
        """Read the rows of ``hashes`` not yet held, one window of Chunks rows at a time, per file."""
        ops = caches.KINDS[kind]
        table = self.index.tables[kind]
        for source, rows in self._rows_by_source(kind, hashes):
            held = self._held[kind].get(source)
            if held is not None:
                rows = rows[held.positions(rows) < 0]
            if not len(rows):
                continue
            data = caches.read_rows(ops, self._reader(kind, source), rows, self.Chunks)
            self._globalise(ops, table, data)
            self._held[kind][source] = caches.hold(ops, held, rows, data)

    def _flush(self, kind: str, hashes: Iterable[HashLike] | HashLike | None) -> None:
        if hashes is None:
            self._held[kind].clear()
            return
        for source, rows in self._rows_by_source(kind, hashes):
            if source in self._held[kind]:
                kept = caches.drop(caches.KINDS[kind], self._held[kind][source], rows)
                if kept is None:
                    del self._held[kind][source]
                else:
                    self._held[kind][source] = kept

    def _rows_by_source(self, kind: str, hashes: Iterable[HashLike] | HashLike | None) -> Iterator[tuple[int, np.ndarray]]:
        """Per registered file of ``kind``, the sorted rows of the given events (all if None)."""
        table = self.index.tables[kind]
        if hashes is None:
            positions = np.arange(len(table))
        else:
            wanted = self._parse_many(hashes)
            positions = table.find(wanted)
            unknown = positions < 0
            for other in KINDS:
                unknown &= self.index.tables[other].find(wanted) < 0
            if unknown.any():
                raise KeyError(f"event {hash_hex(wanted[np.argmax(unknown)])} is not in this tracer")
            positions = positions[positions >= 0]
        sources = table["source"][positions]
        for source in np.unique(sources):
            mine = positions[sources == source]
            rows = np.unique(caches.expand(table["start"][mine], table["count"][mine]))
            yield int(source), rows

    def _globalise(self, ops: caches.CacheKind, table: Any, data: Any) -> None:
        """Replace file-local sample/file codes of read rows by the tracer's codes."""
        rows = table.find(ops.hashes(data))
        ops.set_codes(data, table["sample"][rows], table["file"][rows])

    def _reader(self, kind: str, source: int) -> Any:
        """An open reader of registered file ``source`` of ``kind``; at most OPEN_FILES stay open."""
        key = (kind, source)
        if key in self._readers:
            self._readers.move_to_end(key)
            return self._readers[key]
        reader = caches.KINDS[kind].open(self.index.paths[kind][source])
        self._readers[key] = reader
        while len(self._readers) > OPEN_FILES:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def close(self) -> None:
        """Close every file the tracer holds open (they reopen on the next read)."""
        while self._readers:
            _, reader = self._readers.popitem()
            reader.close()

    def __enter__(self) -> "SampleTracer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.index.tables["events"])

    def __contains__(self, key: Any) -> bool:
        try:
            value = parse_hash(key.hash if isinstance(key, Event) else key)
        except (TypeError, ValueError):
            return False
        return bool(self.index.tables["events"].find(np.array([value], np.uint64))[0] >= 0)

    def __getitem__(self, key: HashLike | slice) -> Event | list[Event]:
        if isinstance(key, slice):
            positions = np.arange(len(self))[key]
            return [view for views in self._views(positions) for view in views]
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, str, np.integer)):
            raise TypeError(f"a tracer is indexed by an event hash (int or hex string) or a slice, not {key!r}")
        try:
            value = parse_hash(key)
        except ValueError:
            raise KeyError(f"{key!r} is not an event hash (16 hex digits or an integer)") from None
        position = self.index.tables["events"].find(np.array([value], np.uint64))[0]
        if position < 0:
            raise KeyError(f"event {hash_hex(value)} is not in this tracer")
        return next(self._views(np.array([position])))[0]

    def __iter__(self) -> Iterator[Event]:
        for views in self.batches():
            yield from views

    def batches(self) -> Iterator[list[Event]]:
        """Event views of EventStart..EventStop, one list per read of at most Chunks events."""
        positions = np.arange(len(self))[self.EventStart:self.EventStop]
        yield from self._views(positions)

    def _views(self, positions: np.ndarray) -> Iterator[list[Event]]:
        """Views of events at ``positions``, read per file in windows of Chunks rows (or from memory)."""
        table = self.index.tables["events"]
        sources = table["source"][positions]
        rows = table["start"][positions]
        breaks = np.flatnonzero((sources[1:] != sources[:-1]) | (rows[1:] <= rows[:-1])) + 1
        for run in np.split(np.arange(len(positions)), breaks):
            if not len(run):
                continue
            source, run_rows = int(sources[run[0]]), rows[run]
            i = 0
            while i < len(run_rows):
                j = int(np.searchsorted(run_rows, run_rows[i] + self.Chunks, side="left"))
                yield self._window(source, run_rows[i:j])
                i = j

    def _window(self, source: int, rows: np.ndarray) -> list[Event]:
        """Views of sorted ``rows`` of one events file: from memory if all are held, else one read."""
        held = self._held["events"].get(source)
        if held is not None:
            at = held.positions(rows)
            if (at >= 0).all():
                if "chunk" not in held.memo:
                    held.memo["chunk"] = Chunk(held.data, self.index.samples, self.index.files)
                return [Event(held.memo["chunk"], int(p), self) for p in at]
        ops = caches.KINDS["events"]
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        batch = self._reader("events", source).read(lo, hi)
        if hi - lo != len(rows):
            batch = ops.gather(batch, rows - lo)
        self._globalise(ops, self.index.tables["events"], batch)
        chunk = Chunk(batch, self.index.samples, self.index.files)
        return [Event(chunk, i, self) for i in range(len(rows))]

    def _release_graph(self, event_hash: int) -> list[dict[str, Any]]:
        """The graphs of one event, from memory if held, else read from its graphs file."""
        table = self.index.tables["graphs"]
        position = table.find(np.array([event_hash], np.uint64))[0]
        if position < 0:
            return []
        source, start, count = (int(table[c][position]) for c in ("source", "start", "count"))
        reader = self._reader("graphs", source)
        held = self._held["graphs"].get(source)
        at = held.positions(np.array([start]))[0] if held is not None else -1
        if at >= 0:
            return caches.graph_dicts(held.data, caches.graph_names(reader), int(at), int(at) + count,
                                      held.offsets("nodes"), held.offsets("edges"))
        return caches.graph_dicts(reader.read(start, start + count), caches.graph_names(reader), 0, count)

    def _release_selection(self, event_hash: int, sample: int, file: int) -> dict[str, Any] | None:
        """The selection of one event; None if no registered selections file covers its sample and file."""
        table = self.index.tables["selections"]
        position = table.find(np.array([event_hash], np.uint64))[0]
        if position < 0:
            cover = self.index.cover
            covering = cover["source"][(cover["sample"] == sample) & (cover["file"] == file)]
            if not len(covering):
                return None
            return caches.selection_dict(self._reader("selections", int(covering[0])).read(0, 0), 0, 0)
        source, start, count = (int(table[c][position]) for c in ("source", "start", "count"))
        held = self._held["selections"].get(source)
        at = held.positions(np.array([start]))[0] if held is not None else -1
        if at >= 0:
            return caches.selection_dict(held.data, int(at), int(at) + count)
        return caches.selection_dict(self._reader("selections", source).read(start, start + count), 0, count)

    @staticmethod
    def _parse_many(hashes: Iterable[HashLike] | HashLike) -> np.ndarray:
        """Hashes given as one int / hex string, or an iterable or array of them, as uint64."""
        if isinstance(hashes, np.ndarray) and hashes.dtype.kind in "iu":
            return hashes.astype(np.uint64)
        if isinstance(hashes, (int, str, np.integer)):
            hashes = [hashes]
        return np.array([parse_hash(h) for h in hashes], dtype=np.uint64)

    def __add__(self, other: "SampleTracer") -> "SampleTracer":
        """A new tracer (these settings, nothing held in memory) indexing both; a hash collision raises."""
        if not isinstance(other, SampleTracer):
            return NotImplemented
        out = SampleTracer(**asdict(self._settings))
        out.index = self.index.copy()
        out._absorb(other.index)
        return out

    def __radd__(self, other: Any) -> "SampleTracer":
        """``0 + tracer``, so that ``sum(tracers)`` works."""
        if isinstance(other, int) and other == 0:
            return self + SampleTracer(**asdict(self._settings))
        return NotImplemented

    def __iadd__(self, other: "SampleTracer") -> "SampleTracer":
        """Index ``other``'s events and caches here too (what is held here stays held); collisions raise."""
        if not isinstance(other, SampleTracer):
            return NotImplemented
        self._absorb(other.index)
        return self

    def __repr__(self) -> str:
        counts = ", ".join(f"{kind}={len(self.index.paths[kind])}" for kind in KINDS)
        return f"SampleTracer({len(self)} events; files: {counts}; samples: {self.index.samples})"

