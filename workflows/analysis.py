"""The Analysis wrapper: every task of a config's DAG up to a chosen stage."""
from __future__ import annotations

import luigi

from tracerflow.config import Config, ConfigError, load_config
from tracerflow.io.stale import remove_stale_outputs
from tracerflow.tasks import (STAGES, ApplySelections, BuildEvents, BuildGraphs, ConvertTFRecords, GenerateSample,
                              Predict, Resample, TrainFold, WriteTrainSample)
from tracerflow.tasks.predict import trained_folds

FILE_STAGES = {"BuildEvents": BuildEvents, "BuildGraphs": BuildGraphs, "ApplySelections": ApplySelections}
STAGE_BLOCKS = {"BuildGraphs": "graph", "Resample": "resample", "WriteTrainSample": "write", "ConvertTFRecords": "tfrecords",
                "TrainFold": "train", "Predict": "train"}
SPLIT_STAGES = {"Resample": Resample, "WriteTrainSample": WriteTrainSample}
LAST = "last"


def last_stage(cfg: Config) -> str:
    """The last stage the config describes: a stage after ApplySelections needs its block."""
    return [s for s in STAGES if s not in STAGE_BLOCKS or cfg[STAGE_BLOCKS[s]] is not None][-1]


def stage_tasks(config: str, overrides: tuple[str, ...], until: str) -> list[luigi.Task]:
    """The tasks of stage ``until`` (or the config's last stage) for every sample, file or split.

    ConvertTFRecords covers only ``tfrecords.splits``; the other splits end at their train files.
    A stage whose config block is missing raises ConfigError naming the block.
    """
    cfg = load_config(config or None, overrides)
    until = last_stage(cfg) if until == LAST else until
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; stages are {', '.join(STAGES)}")
    if until in STAGE_BLOCKS and cfg[STAGE_BLOCKS[until]] is None:
        raise ConfigError(cfg.source, STAGE_BLOCKS[until], f"is missing, and stage {until} needs it")
    params = {"config": config, "overrides": tuple(overrides)}
    if until == "GenerateSample":
        return [GenerateSample(sample=s, **params) for s, spec in cfg["samples"].items() if spec["generate"]]
    if until in SPLIT_STAGES:
        return [SPLIT_STAGES[until](split=s, **params) for s in cfg["resample"]["splits"]]
    if until == "TrainFold":
        return [TrainFold(fold=k, **params) for k in trained_folds(cfg)]
    if until == "Predict":
        extra = [ConvertTFRecords(split=s, **params) for s in cfg["tfrecords"]["splits"]] if cfg["tfrecords"] else []
        return [Predict(**params), *extra]
    if until == "ConvertTFRecords":
        converted = cfg["tfrecords"]["splits"]
        return ([ConvertTFRecords(split=s, **params) for s in converted]
                + [WriteTrainSample(split=s, **params) for s in cfg["resample"]["splits"] if s not in converted])
    stage = FILE_STAGES[until]
    return [stage(sample=s, file=f.logical, **params) for s in cfg["samples"] for f in cfg.sample_files(s)]


def remove_stale_until(cfg: Config, until: str) -> None:
    """Remove the outputs of every stage up to ``until`` that the config no longer makes.

    Each stage also does this as it starts; doing it before a run covers the stages whose
    targets are all complete and so do not run (a sample dropped from the config leaves its
    per-file caches behind otherwise). Predict's own outputs are Predict's to prune.
    """
    until = last_stage(cfg) if until == LAST else until
    for stage in (*STAGES[:STAGES.index(until) + 1], *(("PrepareSample",) if until == "Predict" else ())):
        remove_stale_outputs(cfg, stage)


class Analysis(luigi.WrapperTask):
    """Everything the config describes, up to and including stage ``until``."""

    config = luigi.Parameter(default="", description="analysis YAML; empty for the embedded default")
    overrides = luigi.ListParameter(default=(), description="dotted.key=value overrides")
    until = luigi.ChoiceParameter(choices=(*STAGES, LAST), default=LAST,
                                  description="last stage to run; 'last': the config's last stage")

    def requires(self) -> list[luigi.Task]:
        return stage_tasks(self.config, tuple(self.overrides), self.until)
