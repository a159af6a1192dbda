"""The Resample task's bounded-memory path (kept jets on disk, the split written bucket by bucket)
gives the file the in-memory path (``resample`` + ``write_resampled``) gives, on a small toy sample."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tracerflow.config.load import load_config
from tracerflow.events.build import build_events
from tracerflow.graphs.build import build_graphs
from tracerflow.io.resampled_file import INDEX_COLUMNS
from tracerflow.resample.bucketed import KeptJetsFile, write_kept
from tracerflow.resample.classes import resample_spec, resampled_samples
from tracerflow.resample.gather import source_paths, write_resampled
from tracerflow.resample.inputs import only_split, selection_chunks
from tracerflow.resample.stream import KEPT_COLUMNS, Shuffle, resample, resample_split
from tracerflow.selections.apply import apply_selection
from tracerflow.tasks.build_events import entry_filter
from tracerflow.templates.loader import load_template
from tracerflow.toy import generate_sample

BUCKET_ROWS = 700
CHUNK = 1500


def _config(root: Path, *extra: str):
    return load_config(None, [f"project.output_dir={root}", "samples.ttbar.generate.n_jets=6000",
                              "samples.zprime.generate.n_jets=4000", "samples.ttbar.generate.events_per_file=400",
                              "samples.zprime.generate.events_per_file=700", *extra])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy analysis's selections and graphs files, built by the library calls the tasks make."""
    root = tmp_path_factory.mktemp("bucketed")
    cfg = _config(root)
    sources = []
    for sample in resampled_samples(cfg):
        gen = cfg["samples"][sample]["generate"]
        generate_sample(gen["process"], gen["n_jets"], gen["events_per_file"], cfg.seed, sample,
                        cfg.sample_dir(sample))
        sources += [(sample, f.logical) for f in cfg.sample_files(sample)]
    paths = source_paths(cfg.output_root, sources)
    for (sample, logical), p, source in zip(sources, paths, [f for s in resampled_samples(cfg)
                                                             for f in cfg.sample_files(s)]):
        events = p.selections.parent.parent.parent / "events" / sample / p.selections.name
        build_events(source.path, events, load_template(cfg, "event"), sample=sample, logical_file=logical,
                     tree="events", config_digest="test", created_by="test", entry_filter=entry_filter(cfg["event"]),
                     chunk_size=cfg["event"]["chunk_size"], threads=1, compression=None,
                     non_finite=cfg["event"]["non_finite"], fill_value=cfg["event"]["fill_value"])
        build_graphs(events, p.graphs, load_template(cfg, "graph"), config_digest="test", created_by="test",
                     precision=cfg["graph"]["precision"], compression=None, chunk_size=500)
        apply_selection(events, p.selections, load_template(cfg, "selection"), config_digest="test",
                        created_by="test", chunk_size=700)
    assert len(sources) > 4
    return root, sources, paths


def _chunks(cfg, paths, spec, classes, reverse: bool = False):
    columns = [spec.label, *spec.variables]
    chunks = selection_chunks([p.selections for p in paths], columns, CHUNK)
    if not reverse:
        return chunks
    return lambda: reversed(list(chunks()))


def _in_memory(cfg, sources, paths, split: str, out: Path):
    spec, classes = resample_spec(cfg)
    result = resample(spec, _chunks(cfg, paths, spec, classes), bucket_rows=BUCKET_ROWS)[split]
    rows = {name: getattr(result, name) for name in (*INDEX_COLUMNS, "label", "weight")}
    write_resampled(out, rows, split=split, classes=spec.class_names, sources=sources, paths=paths,
                    config_digest="d", created_by="t")
    return result


def _bucketed(cfg, sources, paths, split: str, out: Path, reverse: bool = False):
    spec, classes = resample_spec(cfg)
    with KeptJetsFile(out.with_suffix(".kept")) as kept:
        summary = resample_split(spec, only_split(_chunks(cfg, paths, spec, classes, reverse), spec, split), split,
                                 kept, kept.blocks, bucket_rows=BUCKET_ROWS)
        kept.close()
        write_kept(out, kept, summary, classes=spec.class_names, sources=sources, paths=paths, config_digest="d",
                   created_by="t")
    return summary


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return out


def _assert_same_file(a: Path, b: Path) -> None:
    left, right = _datasets(a), _datasets(b)
    assert left["attrs"] == right["attrs"]
    assert sorted(left) == sorted(right)
    for name in left:
        if name != "attrs":
            np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.mark.parametrize("split", ["train", "test"])
def test_bucketed_split_equals_the_in_memory_one(toy, tmp_path, split):
    root, sources, paths = toy
    cfg = _config(root)
    result = _in_memory(cfg, sources, paths, split, tmp_path / "memory.h5")
    summary = _bucketed(cfg, sources, paths, split, tmp_path / "bucketed.h5")
    assert summary.shuffle.n_buckets > 1
    assert len(summary) == len(result) > 0
    for field in ("after", "weighted_after", "balance", "hist_before", "hist_after", "unique", "available"):
        np.testing.assert_array_equal(getattr(summary, field), getattr(result, field), err_msg=field)
    _assert_same_file(tmp_path / "memory.h5", tmp_path / "bucketed.h5")


def test_balanced_weights_are_the_same_both_ways(toy, tmp_path):
    root, sources, paths = toy
    cfg = _config(root, "resample.balance_weights=true")
    result = _in_memory(cfg, sources, paths, "train", tmp_path / "memory.h5")
    _bucketed(cfg, sources, paths, "train", tmp_path / "bucketed.h5")
    assert not np.all(result.balance == 1)
    _assert_same_file(tmp_path / "memory.h5", tmp_path / "bucketed.h5")


def test_the_order_the_jets_come_in_does_not_change_the_file(toy, tmp_path):
    root, sources, paths = toy
    cfg = _config(root)
    _bucketed(cfg, sources, paths, "train", tmp_path / "forwards.h5")
    _bucketed(cfg, sources, paths, "train", tmp_path / "backwards.h5", reverse=True)
    _assert_same_file(tmp_path / "forwards.h5", tmp_path / "backwards.h5")


def test_graphs_that_do_not_line_up_are_named(toy, tmp_path):
    root, sources, paths = toy
    cfg = _config(root)
    spec, classes = resample_spec(cfg)
    swapped = [paths[0], type(paths[1])(paths[1].selections, paths[2].graphs), *paths[2:]]
    with KeptJetsFile(tmp_path / "kept") as kept:
        summary = resample_split(spec, _chunks(cfg, paths, spec, classes), "train", kept, kept.blocks)
        with pytest.raises(RuntimeError, match="graphs do not line up"):
            write_kept(tmp_path / "out.h5", kept, summary, classes=spec.class_names, sources=sources, paths=swapped,
                       config_digest="d", created_by="t")
    assert not (tmp_path / "out.h5").exists()


def test_kept_jets_file_reads_back_in_blocks(tmp_path):
    rng = np.random.default_rng(3)
    columns = {"source": rng.integers(0, 5, 1000).astype(np.int32), "row": np.arange(1000, dtype=np.int64),
               "hash": rng.integers(0, 2**63, 1000).astype(np.uint64), "item": rng.integers(0, 4, 1000).astype(np.int32),
               "label": rng.integers(0, 3, 1000).astype(np.int16), "weight": rng.random(1000).astype(np.float32),
               "copies": rng.integers(1, 4, 1000).astype(np.int32)}
    with KeptJetsFile(tmp_path / "kept") as kept:
        kept.add({c: v[:600] for c, v in columns.items()})
        kept.add({c: v[600:] for c, v in columns.items()})
        blocks = list(kept.blocks(256))
    assert [len(b["row"]) for b in blocks] == [256, 256, 256, 232]
    for c in KEPT_COLUMNS:
        back = np.concatenate([b[c] for b in blocks])
        assert back.dtype == columns[c].dtype
        np.testing.assert_array_equal(back, columns[c])


def test_shuffle_order_is_a_permutation_fixed_by_the_rows_not_their_order():
    rng = np.random.default_rng(5)
    n = 5000
    source, row = rng.integers(0, 3, n), rng.permutation(n)
    hashes, items, copies = rng.integers(0, 2**63, n).astype(np.uint64), rng.integers(0, 4, n), rng.integers(0, 3, n)
    shuffle = Shuffle(seed=1, split="train", n_rows=n, bucket_rows=600)
    order = shuffle.order(source, row, hashes, items, copies)
    assert np.array_equal(np.sort(order), np.arange(n))
    mixed = rng.permutation(n)
    again = shuffle.order(source[mixed], row[mixed], hashes[mixed], items[mixed], copies[mixed])
    assert np.array_equal(mixed[again], order)
    sizes = np.bincount(shuffle.buckets(hashes, items, copies), minlength=shuffle.n_buckets)
    assert shuffle.n_buckets == 9 and sizes.min() > 0.7 * n / 9 and sizes.max() < 1.3 * n / 9


def test_resampled_file_finds_node_ranges_from_offsets_kept_per_block(toy, tmp_path, monkeypatch):
    from tracerflow.io import resampled_file
    from tracerflow.io.resampled_file import ResampledFile

    root, sources, paths = toy
    _bucketed(_config(root), sources, paths, "train", tmp_path / "train.h5")
    monkeypatch.setattr(resampled_file, "OFFSET_BLOCK", 97)
    with h5py.File(tmp_path / "train.h5", "r") as f:
        counts, x = f["nodes/counts"][:].astype(np.int64), f["nodes/x"][:]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    with ResampledFile(tmp_path / "train.h5") as split:
        assert len(split) == len(counts)
        for start, stop in [(0, 0), (0, 5), (96, 97), (97, 300), (250, len(counts)), (len(counts), len(counts))]:
            np.testing.assert_array_equal(split.node_offsets(start, stop), offsets[start:stop + 1])
            np.testing.assert_array_equal(split.node_counts(start, stop), counts[start:stop])
            np.testing.assert_array_equal(split.nodes("x", split.node_features, start, stop),
                                          x[offsets[start]:offsets[stop]])
            split.release()


@pytest.mark.parametrize("chunk_size", [333, 100_000])
def test_train_chunks_count_the_float16_patterns_of_the_tracks_they_carry(toy, tmp_path, chunk_size):
    from tracerflow.write.kernels import count_half_patterns
    from tracerflow.write.train_chunks import Columns, TrainChunks

    root, sources, paths = toy
    _bucketed(_config(root), sources, paths, "train", tmp_path / "train.h5")
    with h5py.File(tmp_path / "train.h5", "r") as f:
        names = [str(n) for n in json.loads(f["nodes/x"].attrs["names"])]
    columns = Columns(("pt",), (), tuple(names), (), 3)
    with TrainChunks(tmp_path / "train.h5", columns, n_folds=5, seed=1, chunk_size=chunk_size) as chunks:
        counted = chunks.track_half_counts()
        carried = list(chunks)
    assert counted is not None and sum(len(c) for c in carried) == len(chunks)
    assert all(int(np.max(c.counts, initial=0)) <= 3 for c in carried)
    for j, name in enumerate(names):
        values = np.concatenate([c.tracks[name] for c in carried])
        np.testing.assert_array_equal(counted[name], count_half_patterns([values])[0], err_msg=name)


def test_a_full_disk_met_by_the_scratch_files_names_the_target(toy, tmp_path, monkeypatch):
    import errno

    from tracerflow.io.faults import OutputError
    from tracerflow.resample import bucketed

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    root, sources, paths = toy
    cfg = _config(root)
    spec, classes = resample_spec(cfg)
    monkeypatch.setattr(bucketed, "_append", full)
    out = tmp_path / "train.h5"
    with pytest.raises(OutputError, match=f"disk full: cannot write {out}"):
        with bucketed.scratch_directory(out) as scratch, KeptJetsFile(scratch / "kept") as kept:
            summary = resample_split(spec, _chunks(cfg, paths, spec, classes), "train", kept, kept.blocks)
            write_kept(out, kept, summary, classes=spec.class_names, sources=sources, paths=paths,
                       config_digest="d", created_by="t", scratch=scratch)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
