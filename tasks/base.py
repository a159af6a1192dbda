"""What every tracerflow task shares: the config reference, self-enumeration, digest-checked
targets, provenance records and progress.

A task class names the config block its stage needs (``block``) and enumerates its own
instances from a validated config (:meth:`TracerflowTask.instances`); the Analysis wrapper,
``tracerflow show`` and the batch layer all build the DAG from that one enumeration. A task reads
the paths of the files it consumes only from ``self.input()``.

Parameters are the meaningful ones (sample, file, split, fold) plus ``config_ref``,
``<config name>@<digest of the validated config>``, which luigi's task ids, luigid's web page and
the run summary show. The config path and ``--set`` overrides travel as private, insignificant
parameters: they rebuild the config in the task's process but do not name the task.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import luigi
from luigi.parameter import ParameterVisibility
from luigi.task import flatten

from tracerflow.config import Config, load_config
from tracerflow.io.h5target import stored_digest, target_status
from tracerflow.io.provenance import record_path, write_record
from tracerflow.io.stale import own_outputs, remove_interrupted_writes, remove_stale_outputs
from tracerflow.events.remote import RemoteError
from tracerflow.tasks.progress import Throttle, count, publish

log = logging.getLogger("tracerflow")

#: ``scheduler.files_per_task: auto`` runs one file per task up to this many files of a sample,
#: then groups them so that a sample has at most this many tasks per stage.
AUTO_TASKS_PER_SAMPLE = 16
#: Seconds between two reports of one task that go to ``tracerflow run``'s display.
DISPLAY_INTERVAL = 0.1
#: The config blocks that say how a run is executed (where, on how many workers, as which batch
#: jobs), never what it makes: ``config_ref`` leaves them out.
EXECUTION_BLOCKS = ("scheduler", "batch", "remote")


@functools.lru_cache(maxsize=64)
def config_ref(config: str, overrides: tuple[str, ...]) -> str:
    """``<config name>@<10 hex digits>``: the config file's stem (``default`` for the embedded
    one) and a digest of the validated analysis with every override applied. How it is run (the
    ``scheduler``, ``batch`` and ``remote`` blocks, :data:`EXECUTION_BLOCKS`), performance-only
    keys (chunk sizes, threads) and where the input files are kept (a sample's files count by
    logical name; their contents by identity, in BuildEvents' digests) are left out: they change
    no result, so files made with other settings, or from copies of the inputs elsewhere, stay
    byte-identical."""
    cfg = load_config(config or None, overrides)
    name = Path(config).stem if config else "default"
    analysis = cfg.digest(*(block for block in cfg.as_dict() if block not in (*EXECUTION_BLOCKS, "samples")),
                          extra={"samples": cfg.samples_by_logical_name()})
    return f"{name}@{analysis[:10]}"


class H5Target(luigi.LocalTarget):
    """An HDF5 target that exists only when complete, of the layout version this code writes and
    made from the current config digest."""

    def __init__(self, path: str | Path, digest: str, schema: str, version: int) -> None:
        super().__init__(str(path))
        self.digest = digest
        self.schema = schema
        self.version = version

    def exists(self) -> bool:
        return target_status(self.path, self.digest, self.schema, self.version).ok

    def status(self) -> str:
        """'ok', 'missing', 'incomplete', 'config changed', ... for ``tracerflow show``."""
        return target_status(self.path, self.digest, self.schema, self.version).reason

    def stored_digest(self) -> str | None:
        """The config digest the file on disk was made from (None when there is none to read)."""
        return stored_digest(self.path)


class ConfigReference:
    """The parameters that name the analysis config: ``config_ref`` (public, in task ids) and the
    config path and overrides it is made from (private and insignificant)."""

    config = luigi.Parameter(default="", significant=False, visibility=ParameterVisibility.PRIVATE,
                             description="analysis YAML; empty for the embedded default")
    overrides = luigi.ListParameter(default=(), significant=False, visibility=ParameterVisibility.PRIVATE,
                                    description="dotted.key=value overrides, as --set")
    config_ref = luigi.Parameter(default="", description="<config name>@<digest of the validated config>; "
                                                         "filled in from config and overrides")

    @classmethod
    def get_param_values(cls, params, args, kwargs):  # type: ignore[override]  (luigi's signature)
        """luigi's parameter values, with ``config_ref`` filled in from the config when not given."""
        values = super().get_param_values(params, args, kwargs)  # type: ignore[misc]
        given = dict(values)
        if given.get("config_ref"):
            return values
        ref = config_ref(given["config"], tuple(given["overrides"]))
        return [(name, ref if name == "config_ref" else value) for name, value in values]


class TracerflowTask(ConfigReference, luigi.Task):
    """Base task: a reference to the analysis config, the stage's block and its own instances."""

    #: The config block this stage needs; a config without it ends the DAG before this stage.
    block: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A stage's ``requires()`` is built once per task: its parameters and config never change,
        and luigi, digests and ``show`` ask for it many times."""
        super().__init_subclass__(**kwargs)
        if "requires" in cls.__dict__:
            cls.requires = _once(cls.__dict__["requires"])  # type: ignore[method-assign]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept on this task under ``key`` (which must name everything it depends on)."""
        cache = self.__dict__.setdefault("_memo", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    @classmethod
    def needs_block(cls, cfg: Config) -> bool:
        """Whether ``cfg`` describes this stage: it has the block the stage needs."""
        return cls.block is None or cfg[cls.block] is not None

    @classmethod
    def not_described(cls, cfg: Config) -> str:
        """Why ``cfg`` does not describe this stage, said of its block (``--until`` names it)."""
        return f"is missing, and stage {cls.__name__} needs it"

    @classmethod
    def instances(cls, cfg: Config) -> list[dict[str, Any]]:
        """The parameters (besides the config's) of every task of this stage ``cfg`` describes."""
        raise NotImplementedError(f"{cls.__name__} does not enumerate its instances")

    @classmethod
    def all_for(cls, config: str, overrides: tuple[str, ...]) -> list["TracerflowTask"]:
        """Every task of this stage for the config (none when it lacks the stage's block)."""
        cfg = load_config(config or None, overrides)
        if not cls.needs_block(cfg):
            return []
        return [cls(config=config, overrides=overrides, **params) for params in cls.instances(cfg)]

    @property
    def cfg(self) -> Config:
        return load_config(self.config or None, tuple(self.overrides))

    def config_params(self) -> dict:
        """The parameters that pass the config on to upstream tasks."""
        return {"config": self.config, "overrides": tuple(self.overrides), "config_ref": self.config_ref}

    def label(self) -> str:
        """``Family(sample=..., file=...)``: the task as the analysis names it."""
        params = {k: v for k, v in self.to_str_params(only_significant=True, only_public=True).items()
                  if k != "config_ref"}
        return f"{self.task_family}({', '.join(f'{k}={v}' for k, v in params.items())})"

    def created_by(self) -> str:
        """What the files of this task record as their maker."""
        return repr(self)

    def complete(self) -> bool:
        """luigi's check, except that a task whose digest needs a remote input's identity, from a
        server that does not answer, is not complete: it runs, and fails naming the URL (rather
        than the whole run failing to schedule with a traceback)."""
        try:
            return super().complete()
        except RemoteError:
            return False

    def output_digests(self) -> list[str]:
        """The config digest of each of this task's targets."""
        return [t.digest for t in flatten(self.output()) if isinstance(getattr(t, "digest", None), str)]

    def remove_stale(self) -> None:
        """Remove what a killed run of this task left (temporary files of its own outputs), and this
        stage's outputs of samples, files, splits or folds the config no longer has."""
        remove_interrupted_writes(*own_outputs(self.cfg, self.task_family, self.param_kwargs, self.digest()))
        prune_stage(self.cfg, self.task_family)

    # ---------------------------------------------------------------- progress

    def report(self, fraction: float, message: str, final: bool = False) -> None:
        """Progress of this task: ``fraction`` done (0 to 1) and ``message`` (with real totals and
        units) to the scheduler, at most once a second (a ``final`` report once the task has run a
        second), and to ``tracerflow run``'s display every 0.1 s."""
        shown = self.__dict__.setdefault("_shown", Throttle(DISPLAY_INTERVAL, at_once=True))
        sent = self.__dict__.setdefault("_sent", Throttle())
        percent = max(0, min(100, int(100 * fraction)))
        if shown.due(final):
            publish({"task": self.label(), "state": "progress", "percent": percent, "message": message})
        if sent.due(final):
            self.set_progress_percentage(percent)
            self.set_status_message(message)

    def counter(self, what: str, unit: str, part: tuple[int, int] = (0, 1)) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback reporting ``<what>: <done> of <total> <unit>``; ``part``
        (index, count) places it among several equal parts of the task (files of a group)."""
        index, parts = part

        def update(done: int, total: int) -> None:
            within = done / total if total and total > 0 else 0.0
            self.report((index + min(within, 1.0)) / parts, f"{what}: {count(done, total, unit)}")

        return update


class FileTask(TracerflowTask):
    """A task on a group of input files of one sample (the per-file stages), named by its first
    file; ``scheduler.files_per_task`` sets the group size. Each file keeps its own target and
    digest, so a different grouping keeps every finished file."""

    sample = luigi.Parameter(description="sample name in the config")
    file = luigi.Parameter(description="logical file name (relative to the sample's root) of the first "
                                       "file of the group this task runs")

    #: The output directory below the analysis root (``<kind>/<sample>/<file>.h5``).
    kind: ClassVar[str] = ""

    @classmethod
    def instances(cls, cfg: Config) -> list[dict[str, Any]]:
        return [{"sample": sample, "file": group[0]} for sample in cfg["samples"] for group in file_groups(cfg, sample)]

    def files(self) -> list[str]:
        """The logical names of the input files this task runs."""
        groups = file_groups(self.cfg, self.sample)
        for group in groups:
            if group[0] == self.file:
                return list(group)
        self.cfg.sample_file(self.sample, self.file)  # names the sample and file when there is no such file
        return [self.file]

    def label(self) -> str:
        files = self.files()
        more = f" +{len(files) - 1} files" if len(files) > 1 else ""
        return f"{self.task_family}(sample={self.sample}, file={self.file}{more})"

    def target_path(self, file: str) -> Path:
        """``<output>/<kind>/<sample>/<file without .root>.h5``."""
        paths = self.__dict__.setdefault("_target_paths", {})
        if file not in paths:
            stem = file[:-5] if file.endswith(".root") else file
            paths[file] = self.cfg.output_root / self.kind / self.sample / f"{stem}.h5"
        return paths[file]

    def file_digest(self, file: str) -> str:
        """The config digest of ``file``'s target."""
        raise NotImplementedError

    def created_by(self, file: str | None = None) -> str:  # type: ignore[override]
        """The maker ``file``'s target records: this stage on that one file."""
        return f"{self.task_family}(config_ref={self.config_ref}, sample={self.sample}, file={file or self.file})"

    def file_params(self) -> dict:
        """The parameters of the same group's task of another per-file stage."""
        return {**self.config_params(), "sample": self.sample, "file": self.file}

    def remove_stale(self) -> None:
        targets = [Path(t.path) for t in self.output().values()]
        records = [record_path(self.cfg.output_root, d) for d in self.output_digests()]
        remove_interrupted_writes([*targets, *records], [])
        prune_stage(self.cfg, self.task_family)

    def run_files(self, work: Callable[[str, Callable[[int, int], None]], None], what: str, unit: str) -> None:
        """``work(file, progress)`` for each file of the group whose target is not complete. A file
        that fails does not stop the others; the first failure is raised once all have run (the
        others are logged), and the finished files stay complete."""
        self.remove_stale()
        outputs = self.output()
        todo = [f for f in self.files() if not outputs[f].exists()]
        failures: list[tuple[str, BaseException]] = []
        for index, file in enumerate(todo):
            label = f"{what} {self.sample}/{file}" + (f" (file {index + 1} of {len(todo)})" if len(todo) > 1 else "")
            try:
                work(file, self.counter(label, unit, (index, len(todo))))
            except Exception as err:  # noqa: BLE001 (re-raised below)
                if len(todo) == 1:
                    raise
                log.error("%s failed on %s/%s: %s", self.task_family, self.sample, file, err)
                failures.append((file, err))
        if failures:
            file, err = failures[0]
            if len(failures) > 1:
                log.error("%s: %d of %d files failed: %s", self.label(), len(failures), len(todo),
                          ", ".join(f for f, _ in failures))
            raise err
        self.report(1.0, f"{what} {self.sample}: {count(len(todo), len(todo), 'files')}", final=True)


_pruned: set[tuple[str, tuple[str, ...], str]] = set()


def prune_stage(cfg: Config, stage: str, again: bool = False) -> None:
    """Remove ``stage``'s outputs that ``cfg`` no longer makes (:func:`remove_stale_outputs`), once
    per process, config and stage unless ``again`` (a new run: ``tracerflow run`` prunes every stage
    before it starts): a run's config does not change while it runs, and the scan reads the stage's
    whole output directory, so once per task would cost the square of the number of files. Worker
    processes forked after a prune inherit that it was done."""
    key = (cfg.source, cfg.overrides, stage)
    if again or key not in _pruned:
        _pruned.add(key)
        remove_stale_outputs(cfg, stage)


def mark_pruned(cfg: Config, stages: Iterable[str]) -> None:
    """Take ``stages``' stale outputs as removed for ``cfg`` in this process: a batch job's, whose
    submitter removed them (:func:`prune_stage` for every stage) before it submitted anything, and
    whose config is the submitter's (the job checks ``config_ref``)."""
    for stage in stages:
        _pruned.add((cfg.source, cfg.overrides, stage))


def _once(requires: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(requires)
    def once(self: TracerflowTask) -> Any:
        return self.memo("requires()", lambda: requires(self))

    return once


@functools.lru_cache(maxsize=256)
def file_groups(cfg: Config, sample: str) -> tuple[tuple[str, ...], ...]:
    """The logical file names of ``sample`` in groups of ``scheduler.files_per_task``, in order."""
    names = [f.logical for f in cfg.sample_files(sample)]
    setting = cfg["scheduler"]["files_per_task"]
    size = max(1, math.ceil(len(names) / AUTO_TASKS_PER_SAMPLE)) if setting == "auto" else int(setting)
    return tuple(tuple(names[i:i + size]) for i in range(0, len(names), size))


@TracerflowTask.event_handler(luigi.Event.START)
def _record_provenance(task: TracerflowTask) -> None:
    """Keep what each target's digest is made from (:mod:`tracerflow.io.provenance`), so that
    ``tracerflow show`` can later say what changed since its targets were made."""
    cfg = task.cfg
    for digest in dict.fromkeys(task.output_digests()):
        text = cfg.payload(digest)
        if text is not None:
            write_record(cfg.output_root, digest, text)
    publish({"task": task.label(), "state": "running"})


@TracerflowTask.event_handler(luigi.Event.SUCCESS)
def _done(task: TracerflowTask) -> None:
    publish({"task": task.label(), "state": "done"})


@TracerflowTask.event_handler(luigi.Event.FAILURE)
def _failed(task: TracerflowTask, error: BaseException) -> None:
    publish({"task": task.label(), "state": "failed"})
