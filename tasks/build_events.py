"""BuildEvents[sample, file]: one ROOT file through the event template into an events file."""
from __future__ import annotations

from tracerflow.events.build import build_events
from tracerflow.events.entries import EntryFilter
from tracerflow.events.source import file_identity
from tracerflow.io import events_file
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.generate_sample import GenerateSample
from tracerflow.templates.loader import load_template

def entry_filter(event: dict) -> EntryFilter:
    """The EntryFilter of a validated ``event`` block."""
    return EntryFilter(
        event_start=event["event_start"],
        event_stop=event["event_stop"],
        n_skip=event["n_skip"],
        entry_list=tuple(event["entry_list"]) if event["entry_list"] is not None else None,
        skip_entry_list=tuple(event["skip_entry_list"]),
        run_event_list=tuple(map(tuple, event["run_event_list"])) if event["run_event_list"] is not None else None,
        skip_run_event_list=tuple(map(tuple, event["skip_run_event_list"])),
        run_event_branches=tuple(event["run_event_branches"]),
    )


class BuildEvents(FileTask):
    """Events HDF5 of one input file: index with hashes, event scalars, collections."""

    def requires(self):
        if self.cfg["samples"][self.sample]["generate"] is not None:
            return GenerateSample(sample=self.sample, **self.config_params())
        return []

    def digest(self) -> str:
        upstream = [self.requires().digest()] if self.requires() else []
        event = self.cfg.block_for("event", self.sample)
        identity = file_identity(self.cfg.sample_file(self.sample, self.file).path)
        return self.cfg.digest(f"samples.{self.sample}.tree", upstream=upstream, extra={"file": self.file, "event": event, "input": identity})

    def output(self) -> H5Target:
        return H5Target(self.target_path("events"), self.digest(), events_file.SCHEMA, events_file.SCHEMA_VERSION)

    def run(self) -> None:
        self.remove_stale()
        cfg = self.cfg
        event = cfg.block_for("event", self.sample)
        source = cfg.sample_file(self.sample, self.file)
        with self.progress(f"BuildEvents {self.sample}/{self.file}") as progress:
            build_events(
                source.path, self.output().path, load_template(cfg, "event", self.sample),
                sample=self.sample, logical_file=source.logical, tree=cfg["samples"][self.sample]["tree"],
                config_digest=self.digest(), created_by=repr(self), entry_filter=entry_filter(event),
                chunk_size=event["chunk_size"], threads=event["threads"], compression=event["compression"],
                non_finite=event["non_finite"], fill_value=event["fill_value"], generator_weight=event["generator_weight"],
                negative_weights=event["negative_weights"], progress=progress,
                template_key=(f"samples.{self.sample}.event.template"
                              if "template" in (cfg["samples"][self.sample]["event"] or {}) else "event.template"),
            )
