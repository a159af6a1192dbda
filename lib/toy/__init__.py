"""Toy flavour-tagging detector: ROOT samples of ttbar / zprime jets with their exact Bayes-optimal LLRs.

Jets carry tracks drawn i.i.d. from a flavour-dependent mixture of track origins; every jet also
stores ``jet_llr_bl`` and ``jet_llr_cl``, the exact log-likelihood ratios of its tracks (given
jet pt and eta) under the very distributions that were sampled, the optimum a tagger can reach.
"""
from .detector import ORIGIN_LABELS, ORIGINS, TRACKING, Origin, FlavourTracks, sigma_d0, sigma_z0
from .likelihood import (
    jet_log_likelihood_ratios,
    jet_log_likelihoods,
    log_displaced_ip_density,
    log_pt_fraction_density,
    origin_log_densities,
    track_log_likelihoods,
)
from .processes import FLAVOUR_NAMES, FLAVOURS, PROCESSES, Process
from .sample import TREE_NAME, FilePlan, file_multiplicities, generate_file, generate_sample, plan_files

__all__ = [
    "FLAVOURS",
    "FLAVOUR_NAMES",
    "ORIGINS",
    "ORIGIN_LABELS",
    "PROCESSES",
    "TRACKING",
    "TREE_NAME",
    "FilePlan",
    "FlavourTracks",
    "Origin",
    "Process",
    "file_multiplicities",
    "generate_file",
    "generate_sample",
    "jet_log_likelihood_ratios",
    "jet_log_likelihoods",
    "log_displaced_ip_density",
    "log_pt_fraction_density",
    "origin_log_densities",
    "plan_files",
    "sigma_d0",
    "sigma_z0",
    "track_log_likelihoods",
]
