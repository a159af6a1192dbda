"""The Analysis wrapper: every task of a config's DAG up to a chosen stage."""
from __future__ import annotations

import luigi

from tracerflow.config import load_config
from tracerflow.tasks import STAGES, ApplySelections, BuildEvents, BuildGraphs, GenerateSample

FILE_STAGES = {"BuildEvents": BuildEvents, "BuildGraphs": BuildGraphs, "ApplySelections": ApplySelections}
FINAL_STAGE = STAGES[-1]


def stage_tasks(config: str, overrides: tuple[str, ...], until: str) -> list[luigi.Task]:
    """The tasks of stage ``until`` for every sample (and file) of the config."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; stages are {', '.join(STAGES)}")
    cfg = load_config(config or None, overrides)
    params = {"config": config, "overrides": tuple(overrides)}
    if until == "GenerateSample":
        return [GenerateSample(sample=s, **params) for s, spec in cfg["samples"].items() if spec["generate"]]
    stage = FILE_STAGES[until]
    return [stage(sample=s, file=f.logical, **params) for s in cfg["samples"] for f in cfg.sample_files(s)]


class Analysis(luigi.WrapperTask):
    """Everything the config describes, up to and including stage ``until``."""

    config = luigi.Parameter(default="", description="analysis YAML; empty for the embedded default")
    overrides = luigi.ListParameter(default=(), description="dotted.key=value overrides")
    until = luigi.ChoiceParameter(choices=STAGES, default=FINAL_STAGE, description="last stage to run")

    def requires(self) -> list[luigi.Task]:
        return stage_tasks(self.config, tuple(self.overrides), self.until)
