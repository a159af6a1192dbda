"""ApplySelections[sample, file]: cuts, cutflow and derived outputs of one events file."""
from __future__ import annotations

from tracerflow.io import selections_file
from tracerflow.selections.apply import apply_selection
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.templates.loader import load_template


class ApplySelections(FileTask):
    """Selections HDF5 of one input file: passing index, cutflow, derived outputs."""

    def requires(self) -> dict:
        """The events file, and the graphs file whose jets gather with these (none without a graph block)."""
        needs = {"events": BuildEvents(**self.file_params())}
        if self.cfg["graph"] is not None:
            needs["graphs"] = BuildGraphs(**self.file_params())
        return needs

    def digest(self) -> str:
        selection = self.cfg.block_for("selection", self.sample)
        return self.cfg.digest(upstream=[self.requires()["events"].digest()], extra={"selection": selection})

    def gathered_digests(self) -> list[str]:
        """The digests a task that gathers this file's jets with their graph nodes depends on: the
        selections' (which cover only the events) and the graphs'."""
        return [self.digest(), *([self.requires()["graphs"].digest()] if "graphs" in self.requires() else [])]

    def output(self) -> H5Target:
        return H5Target(self.target_path("selections"), self.digest(), selections_file.SCHEMA, selections_file.SCHEMA_VERSION)

    def run(self) -> None:
        self.remove_stale()
        cfg = self.cfg
        with self.progress(f"ApplySelections {self.sample}/{self.file}") as progress:
            apply_selection(
                self.input()["events"].path, self.output().path, load_template(cfg, "selection", self.sample),
                config_digest=self.digest(), created_by=repr(self),
                chunk_size=cfg.block_for("selection", self.sample)["chunk_size"], progress=progress,
            )
