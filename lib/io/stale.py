"""Removing outputs the config no longer makes, and what interrupted writes left behind.

Each stage calls :func:`remove_stale_outputs` as it starts; it removes, below that stage's output
directory, what no configured (sample, file), split, fold or predict sample maps to, and logs one
line per removal (logger ``tracerflow.stale``). Stages run in parallel (one task per file, split
or fold), so it only ever removes paths outside the configured set, never a configured target
or a directory a configured target lives in: a parallel task may be writing there.

Every file is written under a temporary name beside its final path and renamed into place
(``.<name>.tmp-<pid>[-<thread>]``, :mod:`tracerflow.io.atomic`); a killed run leaves these
behind. When a task runs it first calls :func:`remove_interrupted_writes`: the temporary files
of its own targets and of its provenance record, and any below the directories only it writes,
go once their writing process no longer runs on this machine (:func:`own_outputs` names them per
stage). Those of stale targets go with their target.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from tracerflow.io.atomic import TEMPORARY, temporary_of
from tracerflow.io.provenance import record_path

log = logging.getLogger("tracerflow.stale")
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
    keep = {os.path.normpath(k).replace(os.sep, "/") for k in keep}
    holders = {k[:i] for k in keep for i, c in enumerate(k) if c == "/"}  # every parent of a kept path
    removed: list[Path] = []
    prefix = f"{root}{os.sep}"
    for pattern in patterns:
        # compared as text: 10,000 kept files are checked in a few tens of milliseconds
        for path in sorted(root.glob(pattern), key=str):
            text = str(path)
            relative = text[len(prefix):] if os.sep == "/" and text.startswith(prefix) else path.relative_to(root).as_posix()
            if relative in keep or relative in holders or TEMPORARY.match(path.name):
                continue
            if (removed and any(parent in removed for parent in path.parents)) or not path.exists():
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
    for sibling in _entries(path.parent):
        match = TEMPORARY.match(sibling.name)
        if match and match["name"] == path.name and not _running(int(match["pid"])):
            _remove(sibling)


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_interrupted_writes(targets: Iterable[str | os.PathLike],
                              directories: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Remove the temporary files (or directories) of ``targets`` and every one below ``directories``
    whose writing process no longer runs on this machine, and return them; one log line each.

    Call it only for what the caller alone writes: a task for its own targets and directories
    (:func:`own_outputs`). A temporary file of a process that still runs is left alone (another
    run of the same task in the same place), as is every other file.
    """
    wanted: dict[Path, set[str]] = {}
    for target in targets:
        target = Path(target)
        wanted.setdefault(target.parent, set()).add(target.name)
    found: list[tuple[Path, int]] = []
    for directory, names in wanted.items():
        for entry in _entries(directory):
            parsed = temporary_of(entry.name)
            if parsed and parsed[0] in names:
                found.append((entry, parsed[1]))
    for directory in directories:
        for current, subdirs, files in os.walk(directory):
            for name in (*subdirs, *files):
                parsed = temporary_of(name)
                if parsed:
                    found.append((Path(current) / name, parsed[1]))
            subdirs[:] = [d for d in subdirs if not temporary_of(d)]  # a temporary directory goes whole
    removed: list[Path] = []
    for path, pid in sorted(set(found)):
        if not _running(pid) and _remove(path):
            removed.append(path)
            log.info("removed %s, left by an interrupted write (process %d no longer runs)", path, pid)
    return removed


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


def own_outputs(cfg: Any, stage: str, params: Mapping[str, Any],
                digest: str | None = None) -> tuple[list[Path], list[Path]]:
    """What the task of ``stage`` with parameters ``params`` (sample, file, split or fold) alone writes
    for the validated config ``cfg``: its files (with the provenance record of its ``digest``), and
    the directories whose every file is its own."""
    files, directories = _layout(cfg, stage, params)
    if digest is not None:
        files.append(record_path(cfg.output_root, digest))
    return files, directories


def _layout(cfg: Any, stage: str, params: Mapping[str, Any]) -> tuple[list[Path], list[Path]]:
    root = Path(cfg.output_root)
    if stage == "GenerateSample":
        return [], [cfg.sample_dir(params["sample"])]
    if stage in FILE_STAGES:
        return [root / FILE_STAGES[stage] / params["sample"] / cache_name(params["file"])], []
    if stage == "Resample":
        split, variables = params["split"], list((cfg["resample"] or {}).get("variables", ()))
        return [root / "resample" / name for name in (f"{split}.h5", f"report_{split}.json",
                                                      *(f"plots/resample_{split}_{v}.png" for v in variables))], []
    if stage == "WriteTrainSample":
        # scale_dict.json is the train split's; the other splits start once it is done, so theirs may clear it too
        split = params["split"]
        return [root / "train_sample" / name for name in (f"{split}.h5", f"{split}_folds.h5", "scale_dict.json")], []
    if stage == "ConvertTFRecords":
        return [], [root / "tfrecords" / params["split"]]
    if stage == "PrepareSample":
        return [root / "predict_samples" / f"{params['sample']}{end}" for end in (".h5", "_jets.h5")], []
    if stage == "TrainFold":
        return [], [root / "train" / f"fold_{params['fold']}"]
    if stage == "Predict":
        return [], [root / "predict"]
    return [], []
