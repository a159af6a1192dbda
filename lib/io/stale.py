"""Removing outputs the config no longer makes: files of samples, sample files, splits and folds
that left the config.

Each stage calls :func:`remove_stale_outputs` as it starts; it removes, below that stage's output
directory, what no configured (sample, file), split, fold or predict sample maps to, and logs one
line per removal (logger ``tracerflow.stale``). Stages run in parallel (one task per file, split
or fold), so it only ever removes paths outside the configured set, never a configured target
or a directory a configured target lives in: a parallel task may be writing there. Temporary
files of an interrupted write (``.<name>.tmp-<pid>``, see :mod:`tracerflow.io.h5target`) go
with their stale target once their process no longer runs on this machine; those of configured
targets are left alone (their process may run on another node of a cluster).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger("tracerflow.stale")
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
FILE_STAGES = {"BuildEvents": "events", "BuildGraphs": "graphs", "ApplySelections": "selections"}


def cache_name(logical: str) -> str:
    """The per-file cache path of a sample file below ``<kind>/<sample>/``: its logical name
    with ``.root`` replaced by ``.h5`` (``tasks.base.FileTask.target_path``)."""
    stem = logical[:-5] if logical.endswith(".root") else logical
    return f"{stem}.h5"


def remove_stale(directory: str | os.PathLike, keep: Iterable[str], patterns: Iterable[str],
                 why: str = "the config no longer makes it") -> list[Path]:
    """Remove what ``patterns`` (globs relative to ``directory``; ``**`` descends) match there
    and ``keep`` (paths relative to ``directory``) does not name, and return what was removed.

    A matched directory goes whole. Nothing is removed that is in ``keep`` or holds something
    in ``keep``; parents emptied by a removal go too, but never ``directory`` itself nor a
    parent of a kept path. Temporary files ``.<name>.tmp-<pid>`` of a removed ``<name>`` go
    with it when process ``pid`` no longer runs. Paths that vanish meanwhile (removed by a
    parallel task) are skipped.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    keep = {Path(k).as_posix().rstrip("/") for k in keep}
    holders = {p.as_posix() for k in keep for p in Path(k).parents if p.as_posix() != "."}
    removed: list[Path] = []
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            relative = path.relative_to(root).as_posix()
            if relative in keep or relative in holders or _TMP.match(path.name):
                continue
            if any(parent in removed for parent in path.parents) or not path.exists():
                continue
            if _remove(path):
                removed.append(path)
                log.warning("removed stale %s (%s)", path, why)
    for path in removed:
        _remove_tmp_files(path)
        _remove_empty_parents(path.parent, root, holders)
    return removed


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_tmp_files(path: Path) -> None:
    """Temporary files of ``path`` whose writing process has ended."""
    try:
        siblings = list(path.parent.iterdir())
    except FileNotFoundError:
        return
    for sibling in siblings:
        match = _TMP.match(sibling.name)
        if match and match["name"] == path.name and not _running(int(match["pid"])):
            _remove(sibling)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_empty_parents(directory: Path, root: Path, holders: set[str]) -> None:
    while directory != root and root in directory.parents:
        if directory.relative_to(root).as_posix() in holders:
            return
        try:
            directory.rmdir()
        except OSError:  # not empty, or gone
            return
        directory = directory.parent


# ------------------------------------------------------------------------ per stage

def remove_stale_outputs(cfg: Any, stage: str) -> list[Path]:
    """Remove the outputs of ``stage`` (a task family) that the validated config ``cfg`` no longer
    makes; return them. Stages without outputs of their own to prune remove nothing."""
    root = Path(cfg.output_root)
    if stage in FILE_STAGES:
        kind = FILE_STAGES[stage]
        keep = {f"{sample}/{cache_name(f.logical)}" for sample in cfg["samples"] for f in cfg.sample_files(sample)}
        samples = set(cfg["samples"])
        gone = [p for p in sorted((root / kind).glob("*")) if p.is_dir() and p.name not in samples]
        removed = [p for p in gone if _remove(p)]
        for path in removed:
            log.warning("removed stale %s (sample %r is no longer in the config)", path, path.name)
        return removed + remove_stale(root / kind, keep, ["*/**/*.h5"], "no file of its sample maps to it")
    if stage == "Resample" and cfg["resample"] is not None:
        splits, variables = list(cfg["resample"]["splits"]), list(cfg["resample"]["variables"])
        keep = {name for s in splits for name in (f"{s}.h5", f"report_{s}.json")}
        keep |= {f"plots/resample_{s}_{v}.png" for s in splits for v in variables}
        return remove_stale(root / "resample", keep, ["*.h5", "report_*.json", "plots/resample_*.png"],
                            "its split or variable is no longer in resample")
    if stage == "WriteTrainSample" and cfg["resample"] is not None:
        keep = {name for s in cfg["resample"]["splits"] for name in (f"{s}.h5", f"{s}_folds.h5")}
        return remove_stale(root / "train_sample", keep, ["*.h5"], "its split is no longer in resample.splits")
    if stage == "ConvertTFRecords" and cfg["tfrecords"] is not None:
        keep = set(cfg["tfrecords"]["splits"])
        dirs = [p.name for p in (root / "tfrecords").glob("*") if p.is_dir()]
        return remove_stale(root / "tfrecords", keep, dirs, "its split is no longer in tfrecords.splits")
    if stage == "PrepareSample":
        keep = {name for s in cfg["predict"]["samples"] for name in (f"{s}.h5", f"{s}_jets.h5")}
        return remove_stale(root / "predict_samples", keep, ["*.h5"], "its sample is no longer in predict.samples")
    if stage == "TrainFold" and cfg["train"] is not None:
        folds = cfg["train"]["folds"]
        keep = {f"fold_{k}" for k in (folds if folds is not None else range(cfg["write"]["n_folds"]))}
        dirs = [p.name for p in (root / "train").glob("fold_*") if p.is_dir()]
        return remove_stale(root / "train", keep, dirs, "its fold is no longer trained (train.folds, write.n_folds)")
    return []
