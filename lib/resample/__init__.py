"""The Resample stage as a library: which jets, how many copies and which weight go into each split.

umami-preprocessing's methods (``pdf``, ``countup``, ``weighting``, ``none``) on any number of
resampling variables, computed in two streaming passes over chunks of jets with
counter-based randomness, so the result depends on the seed and never on chunking. See
:mod:`tracerflow.resample.methods` for the semantics and :mod:`tracerflow.resample.report`
for the checks that the resampled distributions match the target's.

Each name is imported from its module on first use (:mod:`tracerflow._lazy`), so importing
one module of this package does not import the others.
"""
from tracerflow._lazy import lazy_exports

_MODULES = {
    ".binning": ("Grid", "edges_from_ranges",),
    ".compare": ("chi2_two_sample", "ks_binned", "project",),
    ".methods": ("SplitPlan", "countup_copies", "plan_split", "poisson_from_uniform",),
    ".report": ("plot_report", "resample_report",),
    ".spec": ("METHODS", "ResampleSpec", "spec_from_config",),
    ".split": ("jet_uniforms", "split_of",),
    ".stream": ("Chunk", "ResampleResult", "resample",),
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
