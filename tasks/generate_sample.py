"""GenerateSample[sample]: write the toy detector's ROOT files of a generated sample."""
from __future__ import annotations

import luigi
import numpy as np

from tracerflow.io.h5target import H5Writer
from tracerflow.tasks.base import H5Target, TracerflowTask

SCHEMA = "tracerflow.sample"
SCHEMA_VERSION = 1


class GenerateSample(TracerflowTask):
    """Toy ROOT files of one sample plus a manifest target that records what was written."""

    sample = luigi.Parameter(description="sample name with a generate block in the config")

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"sample": s} for s, spec in cfg["samples"].items() if spec["generate"]]

    def digest(self) -> str:
        return self.cfg.digest("project.seed", f"samples.{self.sample}.generate")

    def output(self) -> H5Target:
        return H5Target(self.cfg.sample_dir(self.sample) / "manifest.h5", self.digest(), SCHEMA, SCHEMA_VERSION)

    def run(self) -> None:
        from tracerflow.toy import generate_sample

        self.remove_stale()
        cfg = self.cfg
        gen = cfg["samples"][self.sample]["generate"]
        out_dir = cfg.sample_dir(self.sample)
        paths = generate_sample(gen["process"], gen["n_jets"], gen["events_per_file"], cfg.seed, self.sample, out_dir,
                                progress=self.counter(f"GenerateSample {self.sample}", "jets"),
                                pixel_hits=gen["pixel_hits"])
        with H5Writer(self.output().path, SCHEMA, SCHEMA_VERSION, self.digest(), self.created_by(),
                      attrs={"sample": self.sample, "process": gen["process"], "n_jets": gen["n_jets"]}) as writer:
            writer.write("files", np.array([p.name for p in paths], dtype="S"))
