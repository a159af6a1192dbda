"""PrepareSample[sample]: the train file of a sample in ``predict.samples``, for Predict to score."""
from __future__ import annotations

from pathlib import Path

import luigi

from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask, file_groups
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.write_train_sample import SCALE_SPLIT, WriteTrainSample
from tracerflow.write import read_embedded_scale_dict, umami_file


class PrepareSample(TracerflowTask):
    """``predict_samples/<sample>.h5`` (umami layout): every labelled selected jet of the sample, never
    resampled, scaled with the train split's scale dict; ``<sample>_jets.h5`` beside it lists the jets."""

    sample = luigi.Parameter(description="a sample named in predict.samples")

    block = "train"

    @classmethod
    def instances(cls, cfg) -> list[dict]:
        return [{"sample": s} for s in cfg["predict"]["samples"]]

    def requires(self) -> dict:
        """The sample's selections files, the graphs files their jets gather with (required
        directly: luigi looks no further up than a complete task) and the scaling split."""
        params = self.config_params()
        firsts = [g[0] for g in file_groups(self.cfg, self.sample)]
        needs = {"selections": [ApplySelections(sample=self.sample, file=f, **params) for f in firsts],
                 "scaling": WriteTrainSample(split=SCALE_SPLIT, **params)}
        if self.cfg["graph"] is not None:
            needs["graphs"] = [BuildGraphs(sample=self.sample, file=f, **params) for f in firsts]
        return needs

    def digest(self) -> str:
        needs = self.requires()
        upstream = [d for t in needs["selections"] for f in t.files() for d in t.gathered_digests(f)]
        upstream.append(needs["scaling"].digest())
        return self.cfg.digest("project.seed", "resample.label", "resample.classes", "resample.weight", "write",
                               upstream=upstream, extra={"sample": self.sample, f"samples.{self.sample}.label": self.cfg["samples"][self.sample]["label"]})

    def out_dir(self) -> Path:
        return self.cfg.output_root / "predict_samples"

    def output(self) -> H5Target:
        return H5Target(self.out_dir() / f"{self.sample}.h5", self.digest(), umami_file.SCHEMA, umami_file.SCHEMA_VERSION)

    def run(self) -> None:
        from tracerflow.evaluate.predict_samples import write_predict_sample

        self.remove_stale()
        scale_dict = read_embedded_scale_dict(next(iter(self.input()["scaling"].values())).path)
        self.report(0.0, f"PrepareSample {self.sample}: gathering, scaling, writing its jets")
        self.out_dir().mkdir(parents=True, exist_ok=True)
        inputs = self.input()
        sources = [(self.sample, f) for t in self.requires()["selections"] for f in t.files()]
        selections = [Path(t.path) for group in inputs["selections"] for t in group.values()]
        graphs = [Path(t.path) for group in inputs["graphs"] for t in group.values()] if "graphs" in inputs else None
        n_jets = write_predict_sample(self.cfg, self.sample, sources=sources, selections=selections, graphs=graphs,
                                      umami_path=self.output().path, jets_path=self.out_dir() / f"{self.sample}_jets.h5",
                                      scale_dict=scale_dict, config_digest=self.digest(), created_by=self.created_by())
        self.report(1.0, f"PrepareSample {self.sample}: {n_jets:,} jets written", final=True)
