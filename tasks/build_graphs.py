"""BuildGraphs[sample, file]: graphs of one events file through the graph template."""
from __future__ import annotations

from tracerflow.graphs.build import build_graphs
from tracerflow.io import graphs_file
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.templates.loader import load_template


class BuildGraphs(FileTask):
    """Graphs HDF5 of each input file of the group: nodes, edges, features and truth per graph."""

    block = "graph"
    kind = "graphs"

    def requires(self) -> BuildEvents:
        return BuildEvents(**self.file_params())

    def file_digest(self, file: str) -> str:
        events = self.requires().file_digest(file)
        return self.memo((file, events), lambda: self.cfg.digest("graph", upstream=[events]))

    def output(self) -> dict[str, H5Target]:
        return {f: H5Target(self.target_path(f), self.file_digest(f), graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION)
                for f in self.files()}

    def run(self) -> None:
        graph = self.cfg["graph"]
        template = load_template(self.cfg, "graph")
        events, outputs = self.input(), self.output()

        def build(file: str, progress) -> None:
            build_graphs(
                events[file].path, outputs[file].path, template,
                config_digest=outputs[file].digest, created_by=self.created_by(file), precision=graph["precision"],
                compression=graph["compression"], chunk_size=graph["chunk_size"], progress=progress,
            )

        self.run_files(build, "BuildGraphs", "events")
