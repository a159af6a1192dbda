"""The Analysis wrapper: every task of a config's DAG up to a chosen stage.

The tasks come from each stage class's own enumeration (:meth:`TracerflowTask.instances`), so
the wrapper, ``tracerflow show`` and the batch layer build the same DAG from the same code.
"""
from __future__ import annotations

import luigi

from tracerflow.config import Config, ConfigError, load_config
from tracerflow.tasks import STAGE_CLASSES, STAGES, TracerflowTask
from tracerflow.tasks.base import ConfigReference, prune_stage

LAST = "last"


def last_stage(cfg: Config) -> str:
    """The last stage the config describes: the last one whose block it has."""
    return [cls.__name__ for cls in STAGE_CLASSES if cls.needs_block(cfg)][-1]


def stages_until(cfg: Config, until: str) -> list[type[TracerflowTask]]:
    """The stage classes up to and including ``until`` (or the config's last stage) that the config
    describes; ConfigError naming the block when ``until`` itself is not described."""
    until = last_stage(cfg) if until == LAST else until
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; stages are {', '.join(STAGES)}")
    last = STAGE_CLASSES[STAGES.index(until)]
    if not last.needs_block(cfg):
        raise ConfigError(cfg.source, last.block, last.not_described(cfg))
    return [cls for cls in STAGE_CLASSES[:STAGES.index(until) + 1] if cls.needs_block(cfg)]


def stage_tasks(config: str, overrides: tuple[str, ...], until: str) -> list[TracerflowTask]:
    """Every task of every stage up to ``until`` for every sample, file group, split or fold the
    config has (luigi runs each once, however many tasks require it)."""
    cfg = load_config(config or None, overrides)
    return [task for cls in stages_until(cfg, until) for task in cls.all_for(config, overrides)]


def remove_stale_until(cfg: Config, until: str) -> None:
    """Remove the outputs of every stage up to ``until`` that the config no longer makes.

    Each stage also does this as it starts; doing it before a run covers the stages whose
    targets are all complete and so do not run (a sample dropped from the config leaves its
    per-file caches behind otherwise). Predict's own outputs are Predict's to prune.
    """
    for cls in stages_until(cfg, until):
        prune_stage(cfg, cls.__name__, again=True)


class Analysis(ConfigReference, luigi.WrapperTask):
    """Everything the config describes, up to and including stage ``until``."""

    until = luigi.ChoiceParameter(choices=(*STAGES, LAST), default=LAST,
                                  description="last stage to run; 'last': the config's last stage")

    def requires(self) -> list[TracerflowTask]:
        return stage_tasks(self.config, tuple(self.overrides), self.until)

    def label(self) -> str:
        return f"Analysis(until={self.until})"
