"""What every tracerflow task shares: config parameters, digest-checked targets, progress."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import luigi
from tqdm import tqdm

from tracerflow.config import Config, load_config
from tracerflow.io.h5target import stored_digest, target_status
from tracerflow.io.provenance import write_record
from tracerflow.io.stale import own_outputs, remove_interrupted_writes, remove_stale_outputs


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


class TracerflowTask(luigi.Task):
    """Base task: the analysis config (path or embedded default) plus ``--set`` overrides."""

    config = luigi.Parameter(default="", description="analysis YAML; empty for the embedded default")
    overrides = luigi.ListParameter(default=(), description="dotted.key=value overrides, as --set")

    @property
    def cfg(self) -> Config:
        return load_config(self.config or None, tuple(self.overrides))

    def config_params(self) -> dict:
        """The parameters that pass the config on to upstream tasks."""
        return {"config": self.config, "overrides": tuple(self.overrides)}

    def remove_stale(self) -> None:
        """Remove what a killed run of this task left (temporary files of its own outputs), and this
        stage's outputs of samples, files, splits or folds the config no longer has."""
        remove_interrupted_writes(*own_outputs(self.cfg, self.task_family, self.param_kwargs, self.digest()))
        remove_stale_outputs(self.cfg, self.task_family)

    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[[int, int], None]]:
        """A (done, total) callback feeding a tqdm bar and the scheduler's progress and status."""
        bar = tqdm(desc=label, unit="ev", disable=None, leave=False, dynamic_ncols=True)
        last = [-1]

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            percent = int(100 * done / max(total, 1))
            if percent != last[0]:
                last[0] = percent
                self.set_progress_percentage(percent)
                self.set_status_message(f"{label}: {done}/{total}")

        try:
            yield update
        finally:
            bar.close()


class FileTask(TracerflowTask):
    """A task on one input file of one sample (the per-file stages)."""

    sample = luigi.Parameter(description="sample name in the config")
    file = luigi.Parameter(description="logical file name, relative to the sample's root")

    def target_path(self, kind: str) -> Path:
        """``<output>/<kind>/<sample>/<file without .root>.h5``."""
        stem = self.file[:-5] if self.file.endswith(".root") else self.file
        return self.cfg.output_root / kind / self.sample / f"{stem}.h5"

    def file_params(self) -> dict:
        return {**self.config_params(), "sample": self.sample, "file": self.file}


@TracerflowTask.event_handler(luigi.Event.START)
def _record_provenance(task: TracerflowTask) -> None:
    """Keep what the task's digest is made from (:mod:`tracerflow.io.provenance`), so that
    ``tracerflow show`` can later say what changed since its targets were made."""
    if not callable(getattr(task, "digest", None)):
        return
    digest = task.digest()
    text = task.cfg.payload(digest)
    if text is not None:
        write_record(task.cfg.output_root, digest, text)
