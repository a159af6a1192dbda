"""BuildEvents[sample, file]: one ROOT file through the event template into an events file."""
from __future__ import annotations

from pathlib import Path

from tracerflow.background.generator import release_threads
from tracerflow.events.build import build_events
from tracerflow.events.entries import EntryFilter
from tracerflow.events.source import file_identity
from tracerflow.io import events_file
from tracerflow.io.h5target import read_root_attrs
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.generate_sample import GenerateSample
from tracerflow.tasks.train_background import TrainBackgroundGenerator
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
        """The sample's GenerateSample (a generated sample) and, for an overlay of the generator this
        run trains (``background.payload: trained``), TrainBackgroundGenerator."""
        needs = []
        if self.cfg["samples"][self.sample]["generate"] is not None:
            needs.append(GenerateSample(sample=self.sample, **self.config_params()))
        if overlay_payload(self.cfg) == "trained":
            needs.append(TrainBackgroundGenerator(**self.config_params()))
        return needs

    def file_digest(self, file: str) -> str:
        identity = file_identity(self.cfg.sample_file(self.sample, file).path, self.cfg.remote_access)
        key = (file, None if identity is None else tuple(identity.values()))
        return self.memo(key, lambda: self._file_digest(file, identity))

    def _file_digest(self, file: str, identity: dict | None) -> str:
        upstream = self.memo("upstream", lambda: [task.digest() for task in self.requires()])
        event = self.cfg.block_fragment("event", self.sample)
        extra = {"file": file, "event": event, "input": identity}
        background = self.memo("background", lambda: overlay_fragment(self.cfg))
        if background is not None:  # no key without an overlay: digests stay those of before overlays
            extra["background"] = background
        return self.cfg.digest(f"samples.{self.sample}.tree", upstream=upstream, extra=extra)

    def output(self) -> dict[str, H5Target]:
        return {f: H5Target(self.target_path(f), self.file_digest(f), events_file.SCHEMA, events_file.SCHEMA_VERSION)
                for f in self.files()}

    def run(self) -> None:
        cfg = self.cfg
        event = cfg.block_for("event", self.sample)
        template = load_template(cfg, "event", self.sample)
        outputs = self.output()
        overlay = self._overlay()

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
                access=cfg.remote_access, overlay=overlay,
            )

        try:
            self.run_files(build, "BuildEvents", "events")
        finally:
            release_threads()  # after an overlay's generator, what runs next in this process gets its usual threads

    def _overlay(self):
        """The background overlay of this run's config (None without one)."""
        block = self.cfg["background"]
        if block is None or block["overlay"] == "none":
            return None
        from tracerflow.background.overlay import make_overlay

        trained = {}
        if block["payload"] == "trained":
            record = next(t for t in self.requires() if isinstance(t, TrainBackgroundGenerator)).output()
            trained = {"trained_store": str(Path(record.path).parent / "conditions"),
                       "trained_revision": int(read_root_attrs(record.path)["revision"])}
        return make_overlay(block, self.cfg.seed, **trained)


def overlay_payload(cfg) -> str | None:
    """``background.payload`` when BuildEvents overlays generated digits, else None."""
    block = cfg["background"]
    return block["payload"] if block is not None and block["overlay"] == "generated" else None


def overlay_fragment(cfg) -> dict | None:
    """What an events file's digest adds for the background overlay (None without one): the keys
    that decide the overlaid digits; the payload by its sha256 (shipped, a checkpoint file) or, when
    trained in this run, through TrainBackgroundGenerator's digest among the upstream ones."""
    block = cfg["background"]
    if block is None or block["overlay"] == "none":
        return None
    keys = ["overlay", "collection", "geometry"]
    keys += ["physics"] if block["overlay"] == "simulated" else ["model", "globaltag", "seed", "payload"]
    fragment = {key: block[key] for key in keys}
    fragment["project_seed"] = cfg.seed
    payload = overlay_payload(cfg)
    if payload == "shipped":
        from tracerflow.background.conditions import shipped_store
        from tracerflow.background.generator import payload_name

        fragment["sha256"] = shipped_store().entry(block["globaltag"], payload_name(block["model"]))["sha256"]
    elif payload not in (None, "trained"):
        from tracerflow.background.conditions import checkpoint_sha256

        fragment["sha256"] = checkpoint_sha256(payload)
    return fragment
