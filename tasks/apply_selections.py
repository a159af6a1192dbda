"""ApplySelections[sample, file]: cuts, cutflow and derived outputs of one events file."""
from __future__ import annotations

from tracerflow.io import selections_file
from tracerflow.selections.apply import apply_selection
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.templates.loader import load_template


class ApplySelections(FileTask):
    """Selections HDF5 of each events file of the group: passing index, cutflow, derived outputs."""

    kind = "selections"

    def requires(self) -> dict:
        """The events files, and the graphs files whose jets gather with these (none without a graph block)."""
        needs = {"events": BuildEvents(**self.file_params())}
        if self.cfg["graph"] is not None:
            needs["graphs"] = BuildGraphs(**self.file_params())
        return needs

    def file_digest(self, file: str) -> str:
        events = self.requires()["events"].file_digest(file)
        selection = self.cfg.block_fragment("selection", self.sample)
        return self.memo((file, events), lambda: self.cfg.digest(upstream=[events], extra={"selection": selection}))

    def gathered_digests(self, file: str) -> list[str]:
        """The digests a task that gathers ``file``'s jets with their graph nodes depends on: the
        selections' (which cover only the events) and the graphs'."""
        needs = self.requires()
        return [self.file_digest(file), *([needs["graphs"].file_digest(file)] if "graphs" in needs else [])]

    def output(self) -> dict[str, H5Target]:
        return {f: H5Target(self.target_path(f), self.file_digest(f), selections_file.SCHEMA,
                            selections_file.SCHEMA_VERSION) for f in self.files()}

    def run(self) -> None:
        template = load_template(self.cfg, "selection", self.sample)
        chunk_size = self.cfg.block_for("selection", self.sample)["chunk_size"]
        events, outputs = self.input()["events"], self.output()

        def apply(file: str, progress) -> None:
            apply_selection(events[file].path, outputs[file].path, template, config_digest=outputs[file].digest,
                            created_by=self.created_by(file), chunk_size=chunk_size, progress=progress)

        self.run_files(apply, "ApplySelections", "events")
