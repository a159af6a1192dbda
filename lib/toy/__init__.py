"""Toy flavour-tagging detector: ROOT samples of ttbar / zprime jets with their exact Bayes-optimal LLRs.

Jets carry tracks drawn i.i.d. from a flavour-dependent mixture of track origins; every jet also
stores ``jet_llr_bl`` and ``jet_llr_cl``, the exact log-likelihood ratios of its tracks (given
jet pt and eta) under the very distributions that were sampled, the optimum a tagger can reach.

Each name is imported from its module on first use (:mod:`tracerflow._lazy`), so importing
one module of this package does not import the others.
"""
from tracerflow._lazy import lazy_exports

_MODULES = {
    ".detector": ("ORIGIN_LABELS", "ORIGINS", "TRACKING", "Origin", "FlavourTracks", "sigma_d0", "sigma_z0",),
    ".likelihood": ("jet_log_likelihood_ratios", "jet_log_likelihoods", "log_displaced_ip_density", "log_pt_fraction_density", "origin_log_densities", "track_log_likelihoods",),
    ".processes": ("FLAVOUR_NAMES", "FLAVOURS", "PROCESSES", "Process",),
    ".plan": ("FilePlan", "file_multiplicities", "plan_files",),
    ".sample": ("TREE_NAME", "generate_file", "generate_sample",),
    ".pixels": ("GEOMETRIES", "PixelGeometry", "geometry",),
    ".pixel_hits": ("ETA_MAX", "layer_radii", "pixel_of", "pixel_position", "signal_hits",),
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
