"""Event template of the toy flavour-tagging ntuple written by :mod:`tracerflow.toy`.

The default analysis names it as ``tracerflow.templates.toy:ToyEvent``: the example of a
template given as a Python class. Tracks hang below their jet through ``trk_jet_index``.
Nothing derivable is stored: |eta| and similar quantities are one expression away in the
selection and graph templates, and every stored column counts against the cache size.
"""
from __future__ import annotations

import numpy as np

from tracerflow.columns import EventBatch
from tracerflow.templates.event import Collection, EventTemplate


class ToyEvent(EventTemplate):
    """Run, event number and weight; jets (pt, eta, phi, m, truth); tracks of each jet."""

    leaves = {"run": "run", "event_number": "event_number", "weight": "weight"}
    collections = {
        "jets": Collection(
            branches={
                "pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi", "mass": "jet_mass",
                "flavour": "jet_flavour", "ntracks": "jet_ntracks",
                "llr_bl": "jet_llr_bl", "llr_cl": "jet_llr_cl",
            },
            four_vector="ptetaphim",
        ),
        "tracks": Collection(
            branches={
                "pt": "trk_pt", "deta": "trk_deta", "dphi": "trk_dphi", "d0": "trk_d0", "z0": "trk_z0",
                "sigma_d0": "trk_sigma_d0", "sigma_z0": "trk_sigma_z0",
                "charge": "trk_charge", "origin": "trk_origin",
            },
            parent="jets",
            link="trk_jet_index",
        ),
    }



class ToyProcessEvent(ToyEvent):
    """:class:`ToyEvent` plus ``llr_zprime``, the Bayes-optimal log-likelihood ratio of the event being
    Z'-like rather than ttbar-like given its jets' pt and flavour LLRs (the reference of the toy
    event-level analysis, configs/toy-events.yaml; see
    :func:`tracerflow.toy.likelihood.event_log_likelihood_ratio`)."""

    def derive(self, batch: EventBatch) -> None:
        from tracerflow.toy.likelihood import event_log_likelihood_ratio

        jets = batch.tables["jets"]
        batch.event["llr_zprime"] = event_log_likelihood_ratio(
            jets.counts, jets.fields["pt"], jets.fields["llr_bl"], jets.fields["llr_cl"]).astype(np.float32)
