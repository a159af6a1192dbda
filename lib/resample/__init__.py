"""The Resample stage as a library: which jets, how many copies and which weight go into each split.

umami-preprocessing's methods (``pdf``, ``countup``, ``weighting``, ``none``) on any number of
resampling variables, computed in two streaming passes over chunks of jets with
counter-based randomness, so the result depends on the seed and never on chunking. See
:mod:`tracerflow.resample.methods` for the semantics and :mod:`tracerflow.resample.report`
for the checks that the resampled distributions match the target's.
"""
from __future__ import annotations

from tracerflow.resample.binning import Grid, edges_from_ranges
from tracerflow.resample.compare import chi2_two_sample, ks_binned, project
from tracerflow.resample.methods import SplitPlan, countup_copies, plan_split, poisson_from_uniform
from tracerflow.resample.report import plot_report, resample_report
from tracerflow.resample.spec import METHODS, ResampleSpec, spec_from_config
from tracerflow.resample.split import jet_uniforms, split_of
from tracerflow.resample.stream import Chunk, ResampleResult, resample

__all__ = [
    "METHODS",
    "Chunk",
    "Grid",
    "ResampleResult",
    "ResampleSpec",
    "SplitPlan",
    "chi2_two_sample",
    "countup_copies",
    "edges_from_ranges",
    "jet_uniforms",
    "ks_binned",
    "plan_split",
    "plot_report",
    "poisson_from_uniform",
    "project",
    "resample",
    "resample_report",
    "spec_from_config",
    "split_of",
]
