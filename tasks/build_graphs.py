"""BuildGraphs[sample, file]: graphs of one events file through the graph template."""
from __future__ import annotations

from tracerflow.graphs.build import build_graphs
from tracerflow.io import graphs_file
from tracerflow.tasks.base import FileTask, H5Target
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.templates.loader import load_template


class BuildGraphs(FileTask):
    """Graphs HDF5 of one input file: nodes, edges, features and truth per graph."""

    def requires(self) -> BuildEvents:
        return BuildEvents(**self.file_params())

    def digest(self) -> str:
        return self.cfg.digest("graph", upstream=[self.requires().digest()])

    def output(self) -> H5Target:
        return H5Target(self.target_path("graphs"), self.digest(), graphs_file.SCHEMA, graphs_file.SCHEMA_VERSION)

    def run(self) -> None:
        self.remove_stale()
        cfg = self.cfg
        graph = cfg["graph"]
        with self.progress(f"BuildGraphs {self.sample}/{self.file}") as progress:
            build_graphs(
                self.input().path, self.output().path, load_template(cfg, "graph"),
                config_digest=self.digest(), created_by=repr(self), precision=graph["precision"],
                compression=graph["compression"], chunk_size=graph["chunk_size"], progress=progress,
            )
