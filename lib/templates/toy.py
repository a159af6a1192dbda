"""Event template of the toy flavour-tagging ntuple written by :mod:`tracerflow.toy`.

The default analysis names it as ``tracerflow.templates.toy:ToyEvent``: the example of a
template given as a Python class. Tracks hang below their jet through ``trk_jet_index``.
Nothing derivable is stored: |eta| and similar quantities are one expression away in the
selection and graph templates, and every stored column counts against the cache size.
"""
from __future__ import annotations

import numpy as np

from tracerflow.columns import EventBatch, Table
from tracerflow.templates.event import Collection, EventTemplate
from tracerflow.templates.fourvector import wrap_phi


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


class ToyHitEvent(EventTemplate):
    """The toy's pixel hits (``generate.pixel_hits``; the background overlay adds to them), for the
    hit-level analysis (configs/hits.yaml): run, event number, weight; ``hits`` (sensor, ucell,
    vcell, charge, is_background, and derived: layer and the pixel centre's eta and phi in the
    detector of :attr:`geometry`); and below each hit its ``neighbours``, the :attr:`k` hits of
    its event nearest in delta R (deta, dphi, dr to the hit, charge, dlayer = their layer minus
    the hit's, is_background): the hit's surroundings a graph is built over. Derived after the
    overlay, so overlaid hits have their neighbours too."""

    geometry = "default"
    k = 8
    leaves = {"run": "run", "event_number": "event_number", "weight": "weight"}
    collections = {
        "hits": Collection(branches={"sensor": "hit_sensor", "ucell": "hit_ucell", "vcell": "hit_vcell",
                                     "charge": "hit_charge", "is_background": "hit_is_background"}),
    }

    def derive(self, batch: EventBatch) -> None:
        from tracerflow.graphs.topology import KNearest
        from tracerflow.toy.pixel_hits import pixel_position
        from tracerflow.toy.pixels import geometry

        hits = batch.tables["hits"]
        hits.fields.update(pixel_position(geometry(self.geometry), hits.fields["sensor"], hits.fields["ucell"],
                                          hits.fields["vcell"]))
        edges = KNearest(k=self.k).edges(hits.counts, lambda name: hits.fields[name])
        # each hit's neighbours, in the order of the hits (edges are sorted by graph, then source)
        src, dst = edges.src, edges.dst
        eta, phi = hits.fields["eta"], hits.fields["phi"]
        deta = (eta[dst] - eta[src]).astype(np.float32)
        dphi = wrap_phi(phi[dst].astype(np.float64) - phi[src]).astype(np.float32)
        batch.tables["neighbours"] = Table(
            counts=np.bincount(src, minlength=len(hits)).astype(np.int64),
            fields={"deta": deta, "dphi": dphi, "dr": np.hypot(deta, dphi).astype(np.float32),
                    "charge": hits.fields["charge"][dst],
                    "dlayer": (hits.fields["layer"][dst] - hits.fields["layer"][src]).astype(np.int8),
                    "is_background": hits.fields["is_background"][dst]},
            parent="hits")


class ToyHitEventBelle2(ToyHitEvent):
    """:class:`ToyHitEvent` in Belle II's pixel geometry (40 sensors of 250 x 768)."""

    geometry = "belle2"
