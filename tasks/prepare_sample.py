"""PrepareSample[sample]: the train file of a sample in ``predict.samples``, for Predict to score."""
from __future__ import annotations

from pathlib import Path

import luigi

from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.write_train_sample import SCALE_SPLIT, WriteTrainSample
from tracerflow.write import read_embedded_scale_dict, umami_file


class PrepareSample(TracerflowTask):
    """``predict_samples/<sample>.h5`` (umami layout): every labelled selected jet of the sample, never
    resampled, scaled with the train split's scale dict; ``<sample>_jets.h5`` beside it lists the jets."""

    sample = luigi.Parameter(description="a sample named in predict.samples")

    def requires(self) -> dict:
        """The sample's selections files, the graphs files their jets gather with (required
        directly: luigi looks no further up than a complete task) and the scaling split."""
        params = self.config_params()
        files = [f.logical for f in self.cfg.sample_files(self.sample)]
        needs = {"selections": [ApplySelections(sample=self.sample, file=f, **params) for f in files],
                 "scaling": WriteTrainSample(split=SCALE_SPLIT, **params)}
        if self.cfg["graph"] is not None:
            needs["graphs"] = [BuildGraphs(sample=self.sample, file=f, **params) for f in files]
        return needs

    def digest(self) -> str:
        needs = self.requires()
        upstream = [d for t in needs["selections"] for d in t.gathered_digests()]
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
        self.set_status_message(f"PrepareSample {self.sample}: gathering, scaling, writing")
        self.out_dir().mkdir(parents=True, exist_ok=True)
        write_predict_sample(self.cfg, self.sample, umami_path=self.output().path,
                             jets_path=self.out_dir() / f"{self.sample}_jets.h5", scale_dict=scale_dict,
                             config_digest=self.digest(), created_by=repr(self))
        self.set_progress_percentage(100)
