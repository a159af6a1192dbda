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
    """Events HDF5 of each input file of the group: index with hashes, event scalars, collections."""

    kind = "events"

    def requires(self):
        if self.cfg["samples"][self.sample]["generate"] is not None:
            return GenerateSample(sample=self.sample, **self.config_params())
        return []

    def file_digest(self, file: str) -> str:
        identity = file_identity(self.cfg.sample_file(self.sample, file).path, self.cfg.remote_access)
        key = (file, None if identity is None else tuple(identity.values()))
        return self.memo(key, lambda: self._file_digest(file, identity))

    def _file_digest(self, file: str, identity: dict | None) -> str:
        upstream = self.memo("upstream", lambda: [self.requires().digest()] if self.requires() else [])
        event = self.cfg.block_fragment("event", self.sample)
        return self.cfg.digest(f"samples.{self.sample}.tree", upstream=upstream, extra={"file": file, "event": event, "input": identity})

    def output(self) -> dict[str, H5Target]:
        return {f: H5Target(self.target_path(f), self.file_digest(f), events_file.SCHEMA, events_file.SCHEMA_VERSION)
                for f in self.files()}

    def run(self) -> None:
        cfg = self.cfg
        event = cfg.block_for("event", self.sample)
        template = load_template(cfg, "event", self.sample)
        outputs = self.output()

        def build(file: str, progress) -> None:
            source = cfg.sample_file(self.sample, file)
            build_events(
                source.path, outputs[file].path, template,
                sample=self.sample, logical_file=source.logical, tree=cfg["samples"][self.sample]["tree"],
                config_digest=outputs[file].digest, created_by=self.created_by(file), entry_filter=entry_filter(event),
                chunk_size=event["chunk_size"], threads=event["threads"], compression=event["compression"],
                non_finite=event["non_finite"], fill_value=event["fill_value"], generator_weight=event["generator_weight"],
                negative_weights=event["negative_weights"], progress=progress,
                template_key=(f"samples.{self.sample}.event.template"
                              if "template" in (cfg["samples"][self.sample]["event"] or {}) else "event.template"),
                access=cfg.remote_access,
            )

        self.run_files(build, "BuildEvents", "events")
