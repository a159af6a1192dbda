"""Task digests follow every input a task reads: a change upstream makes the downstream targets stale."""
from __future__ import annotations

import pytest

from tracerflow.tasks.convert_tfrecords import ConvertTFRecords
from tracerflow.tasks.resample import Resample
from tracerflow.tasks.write_train_sample import WriteTrainSample

GRAPH_CHANGE = "graph.template.topology.k=4"


@pytest.mark.parametrize("task", [Resample, WriteTrainSample, ConvertTFRecords])
def test_a_graph_config_change_reaches_the_tasks_that_carry_graph_nodes(task):
    """Resample gathers the graph nodes, so it and everything after it must rerun when the graphs change."""
    before = task(split="train").digest()
    assert task(split="train", overrides=(GRAPH_CHANGE,)).digest() != before
    assert task(split="train", overrides=("project.seed=43",)).digest() != before


def test_a_train_setting_does_not_reach_resample():
    assert Resample(split="train", overrides=("train.epochs=3",)).digest() == Resample(split="train").digest()
