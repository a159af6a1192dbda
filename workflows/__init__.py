"""Whole analyses wired from a config, the ``tracerflow`` command and scheduler glue.

``luigi --module tracerflow.workflows <Task> --config my.yaml --local-scheduler`` finds every
stage here. Importing this package makes luigi exit non-zero on failure (luigi's own
default exits 0 whatever happened) unless a luigi.cfg sets ``[retcode]`` itself.
"""
from tracerflow.tasks import (ApplySelections, BuildEvents, BuildGraphs, ConvertTFRecords, GenerateSample, Predict,
                              Resample, TrainFold, WriteTrainSample)
from tracerflow.workflows.analysis import Analysis
from tracerflow.workflows.retcodes import install_retcodes

install_retcodes()

__all__ = ["Analysis", "ApplySelections", "BuildEvents", "BuildGraphs", "ConvertTFRecords", "GenerateSample",
           "Predict", "Resample", "TrainFold", "WriteTrainSample"]
