"""The ``clusters`` background model: a sparse, cluster-level generator conditioned on the sensor
and a shared per-event intensity, fitted by maximum likelihood to simulated events.

An event is drawn as a list of clusters, never as dense images, so a mostly empty detector costs
in proportion to its fired pixels (the generator calls :meth:`ClusterModel.digits`):

* intensity: a per-event log-intensity ``l = sigma z + skew (z^2 - 1)`` with ``z ~ N(0, 1)``
  shared by the event's sensors (a given ``intensity`` I, mean 1, sets ``exp(l) = I E[exp(l)]``).
  The skew term lets the intensity's distribution be other than log-normal: fitted to the toy's
  Gamma(6) intensity, a pure log-normal overstates its variance by ~10% and so every inter-sensor
  correlation by ~0.02;
* counts: sensor ``s`` has ``n_s ~ Poisson(exp(l + log_rate[s]))`` clusters. Marginalised over
  ``z`` this is the likelihood the fit maximises; it gives every sensor's mean occupancy and the
  correlation of an event's sensors (through the shared ``l``);
* positions: a cluster's anchor (the top-left corner of its bounding box) falls in a cell of a
  coarse grid (``CELL`` x ``CELL`` pixels) drawn from a categorical per layer, uniformly within
  the cell;
* shape: a pattern of fired pixels within a ``WINDOW`` x ``WINDOW`` box from the anchor, drawn
  from a categorical conditioned on how close the anchor is to the sensor's far edges (the
  "edge class"), so clusters cut by an edge are drawn as often as they were seen;
* charges: the 8-bit charges of the pattern's pixels, drawn jointly from a bank of charge vectors
  seen with that pattern in training (the empirical distribution, the non-parametric maximum-
  likelihood estimate; at most ``BANK_CAP`` per pattern, the first seen).

Pixels of overlapping clusters add their charges (capped at 255), as in the simulation. The
training clusters are the 8-connected components of the simulated events' digits
(:func:`tracerflow.background.quality.cluster_labels`); one larger than the window is cut into
window-sized pieces, so every training pixel is kept.

Every table is a state-dict tensor (counts as int64, charges as uint8, the two fitted parameters
float32); :meth:`ClusterModel.config` records the table sizes, so a payload rebuilds the model
through the conditions store like the image models.

Determinism: :meth:`ClusterModel.sample_latents` draws, from the event's own ``torch.Generator``,
the event's ``z`` and a 63-bit key; every other random number of the event (counts, positions,
patterns, charges) comes from a NumPy Philox generator keyed by that key, one event at a time.
Everything after that is elementwise float64/integer work or a sort, so an event's digits do not
depend on the other events of the batch, on their order or on the thread count.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tracerflow.toy.pixels import PixelGeometry

#: Side of the pattern window (pixels): a cluster is a set of fired pixels within WINDOW x WINDOW.
WINDOW = 4
#: Side of a cell of the anchor grid (pixels).
CELL = 8
#: Charge vectors kept per pattern.
BANK_CAP = 2048
#: Nodes of the grid the count likelihood is marginalised over z on (trapezoid on [-Z_MAX, Z_MAX]).
Z_NODES = 2001
Z_MAX = 9.0
#: Draws per cluster: cell, u within the cell, v within the cell, pattern, charge vector.
_DRAWS = 5


class ClusterModel(nn.Module):
    """See the module docstring. ``patterns``, ``bank``: the sizes of the fitted tables."""

    name = "clusters"
    uses_intensity = True

    def __init__(self, geometry: PixelGeometry, patterns: int = 1, bank: int = 1, window: int = WINDOW,
                 cell: int = CELL) -> None:
        super().__init__()
        if patterns < 1 or bank < 1 or window < 1 or cell < 1:
            raise ValueError(f"patterns, bank, window and cell must be positive, got {patterns}, {bank}, {window}, {cell}")
        if window * window > 62:
            raise ValueError(f"a {window} x {window} window does not fit a 64-bit pattern mask")
        self.geometry = geometry
        self.window, self.cell = int(window), int(cell)
        self.grid = (math.ceil(geometry.height / cell), math.ceil(geometry.width / cell))
        s, layers = geometry.n_sensors, len(geometry.layers)
        self.log_rate = nn.Parameter(torch.zeros(s))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.4)))
        self.skew = nn.Parameter(torch.zeros(()))
        self.register_buffer("cell_counts", torch.ones(layers, self.grid[0] * self.grid[1], dtype=torch.int64))
        self.register_buffer("pattern_counts", torch.ones(window * window, patterns, dtype=torch.int64))
        self.register_buffer("pattern_masks", torch.ones(patterns, dtype=torch.int64))
        self.register_buffer("bank_start", torch.zeros(patterns, dtype=torch.int64))
        self.register_buffer("bank_count", torch.ones(patterns, dtype=torch.int64))
        default_bank = torch.zeros(bank, window * window, dtype=torch.uint8)
        default_bank[:, 0] = 30
        self.register_buffer("bank", default_bank)
        self._tables: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ interface

    @staticmethod
    def options_of_state(state: dict[str, Tensor]) -> dict[str, Any]:
        """The table sizes (``patterns``, ``bank``, ``window``) of a state dict of this model."""
        window = math.isqrt(int(state["bank"].shape[1]))
        return {"patterns": int(state["pattern_masks"].shape[0]), "bank": int(state["bank"].shape[0]),
                "window": window}

    def options(self) -> dict[str, Any]:
        return {"patterns": int(self.pattern_masks.shape[0]), "bank": int(self.bank.shape[0]),
                "window": self.window, "cell": self.cell}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "geometry": self.geometry.as_dict(), **self.options()}

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"z": (), "key": ()}

    def sample_latents(self, generator: torch.Generator) -> dict[str, Tensor]:
        """ONE event's latents from its own generator: ``z`` (float64 N(0, 1)) and ``key`` (int64,
        the key of the event's Philox generator for everything else), each of shape ``(1,)``."""
        z = torch.randn((1,), generator=generator, dtype=torch.float64, device=generator.device)
        key = torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64, device=generator.device)
        return {"z": z, "key": key}

    def _load_from_state_dict(self, *args, **kwargs):
        self._tables = None
        return super()._load_from_state_dict(*args, **kwargs)

    def tables(self) -> dict[str, np.ndarray]:
        """The tables as NumPy arrays (float64 CDFs), cached until a state dict is loaded."""
        if self._tables is None:
            w = self.window
            cells = self.cell_counts.detach().cpu().numpy().astype(np.float64)
            layers = len(self.geometry.layers)
            cell_cdf = np.cumsum(cells, axis=1) / np.maximum(cells.sum(axis=1, keepdims=True), 1.0)
            pattern = self.pattern_counts.detach().cpu().numpy().astype(np.float64)
            pattern_cdf = np.cumsum(pattern, axis=1) / np.maximum(pattern.sum(axis=1, keepdims=True), 1.0)
            sigma = float(np.exp(np.float64(self.log_sigma.detach().cpu().item())))
            skew = float(self.skew.detach().cpu().item())
            zs = np.linspace(-Z_MAX, Z_MAX, Z_NODES)
            weight = np.exp(-0.5 * zs * zs) * (zs[1] - zs[0]) / math.sqrt(2.0 * math.pi)
            self._tables = {
                "log_rate": self.log_rate.detach().cpu().numpy().astype(np.float64),
                "sigma": sigma,
                "skew": skew,
                # log E[exp(l)]: a given intensity I (mean 1) is the level log I + this
                "log_mean_level": float(np.log(np.sum(weight * np.exp(sigma * zs + skew * (zs * zs - 1.0))))),
                # each row's CDF shifted by its row index: one searchsorted for all rows
                "cell_cdf": (cell_cdf + np.arange(layers)[:, None]).ravel(),
                "pattern_cdf": (pattern_cdf + np.arange(w * w)[:, None]).ravel(),
                "n_cells": np.int64(cells.shape[1]),
                "n_patterns": np.int64(pattern.shape[1]),
                "bank": self.bank.detach().cpu().numpy(),
                "bank_start": self.bank_start.detach().cpu().numpy(),
                "bank_count": self.bank_count.detach().cpu().numpy(),
                "layer": self.geometry.layer_of().astype(np.int64),
            }
        return self._tables

    def forward(self, latents: dict[str, Tensor], intensity: Tensor | None = None) -> dict[str, np.ndarray]:
        return self.digits(latents, intensity)

    def digits(self, latents: dict[str, Tensor], intensity: Tensor | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The digits of the events whose latents are stacked in ``latents`` (flat arrays
        ``event``, ``sensor``, ``ucell``, ``vcell``, ``charge`` ordered by event, sensor, ucell,
        vcell, as :func:`~tracerflow.background.models.digits_of` gives them); ``intensity``: an
        optional intensity per event (1 = the mean event)."""
        if set(latents) != {"z", "key"}:
            raise ValueError(f"the 'clusters' model takes latents ['key', 'z'], got {sorted(latents)}")
        z = latents["z"].detach().cpu().numpy().astype(np.float64).ravel()
        keys = latents["key"].detach().cpu().numpy().astype(np.int64).ravel()
        if len(z) != len(keys) or not len(z):
            raise ValueError(f"latents disagree on the number of events or hold none: {len(z)} and {len(keys)}")
        events = len(z)
        if intensity is not None:
            intensity = np.asarray(torch.as_tensor(intensity).detach().cpu().numpy(), dtype=np.float64).ravel()
            if intensity.shape != (events,):
                raise ValueError(f"intensity must have shape ({events},) (one per event), got {intensity.shape}")
        t = self.tables()
        g, w = self.geometry, self.window
        sigma, skew, log_mean = t["sigma"], t["skew"], t["log_mean_level"]
        counts, draws = [], []
        for i in range(events):
            rng = np.random.Generator(np.random.Philox(key=int(keys[i])))
            if intensity is None:
                level = sigma * z[i] + skew * (z[i] * z[i] - 1.0)
            else:
                level = math.log(max(intensity[i], 1e-300)) + log_mean
            n = rng.poisson(np.exp(level + t["log_rate"]))
            counts.append(n)
            draws.append(rng.random((int(n.sum()), _DRAWS)))
        counts = np.stack(counts)  # (events, sensors)
        draws = np.concatenate(draws) if draws else np.zeros((0, _DRAWS))
        flat = counts.ravel()
        owner = np.repeat(np.arange(len(flat), dtype=np.int64), flat)
        event, sensor = np.divmod(owner, g.n_sensors)
        layer = t["layer"][sensor]
        # the anchor: a cell of the layer's grid, then uniformly within it
        cell = np.searchsorted(t["cell_cdf"], layer + np.minimum(draws[:, 0], 1.0 - 1e-12), side="right")
        cell = np.minimum(cell - layer * t["n_cells"], t["n_cells"] - 1)
        cu, cv = np.divmod(cell, self.grid[1])
        u0 = cu * self.cell + np.floor(draws[:, 1] * np.minimum(self.cell, g.height - cu * self.cell)).astype(np.int64)
        v0 = cv * self.cell + np.floor(draws[:, 2] * np.minimum(self.cell, g.width - cv * self.cell)).astype(np.int64)
        edge = np.minimum(g.height - 1 - u0, w - 1) * w + np.minimum(g.width - 1 - v0, w - 1)
        pattern = np.searchsorted(t["pattern_cdf"], edge + np.minimum(draws[:, 3], 1.0 - 1e-12), side="right")
        pattern = np.minimum(pattern - edge * t["n_patterns"], t["n_patterns"] - 1)
        row = t["bank_start"][pattern] + np.floor(draws[:, 4] * t["bank_count"][pattern]).astype(np.int64)
        charges = t["bank"][row]  # (clusters, window * window)
        cluster, k = np.nonzero(charges)
        q = charges[cluster, k].astype(np.int64)
        du, dv = np.divmod(k, w)
        u, v = u0[cluster] + du, v0[cluster] + dv
        inside = (u < g.height) & (v < g.width)
        key = ((event[cluster] * g.n_sensors + sensor[cluster]) * g.height + u) * g.width + v
        pixels, inverse = np.unique(key[inside], return_inverse=True)
        summed = np.minimum(np.bincount(inverse.ravel(), weights=q[inside], minlength=len(pixels)), 255)
        rest, vv = np.divmod(pixels, g.width)
        rest, uu = np.divmod(rest, g.height)
        ev, ss = np.divmod(rest, g.n_sensors)
        return {"event": ev.astype(np.int32), "sensor": ss.astype(np.int16), "ucell": uu.astype(np.int16),
                "vcell": vv.astype(np.int16), "charge": summed.astype(np.uint8)}


# ---------------------------------------------------------------------------------------------
# Fitting


def decompose(geometry: PixelGeometry, digits: dict[str, np.ndarray], window: int = WINDOW) -> dict[str, np.ndarray]:
    """The training clusters of flat digits: the 8-connected components, each cut into
    ``window`` x ``window`` pieces from its bounding box's corner. Per piece (ordered by event,
    sensor, anchor): ``event``, ``sensor``, ``u0``, ``v0`` (anchor), ``mask`` (bit ``du * window +
    dv``) and ``charges`` ``(pieces, window * window)`` uint8."""
    from tracerflow.background.quality import cluster_labels

    event, sensor, u, v = (np.asarray(digits[k]).astype(np.int64) for k in ("event", "sensor", "ucell", "vcell"))
    charge = np.asarray(digits["charge"]).astype(np.uint8)
    labels = cluster_labels(geometry, event, sensor, u, v)
    n = int(labels.max()) + 1 if len(labels) else 0
    big = np.iinfo(np.int64).max
    umin = np.full(n, big)
    vmin = np.full(n, big)
    np.minimum.at(umin, labels, u)
    np.minimum.at(vmin, labels, v)
    du, dv = u - umin[labels], v - vmin[labels]
    # pieces: (component, du // window, dv // window)
    pu, pv = du // window, dv // window
    span = int(max(pu.max(initial=0), pv.max(initial=0))) + 1
    piece_key = (labels * span + pu) * span + pv
    pieces, piece = np.unique(piece_key, return_inverse=True)
    piece = piece.ravel()
    first = np.zeros(len(pieces), dtype=np.int64)
    first[piece[::-1]] = np.arange(len(piece))[::-1]  # a digit of each piece
    bit = (du % window) * window + (dv % window)
    mask = np.zeros(len(pieces), dtype=np.int64)
    np.add.at(mask, piece, np.left_shift(np.int64(1), bit))
    charges = np.zeros((len(pieces), window * window), dtype=np.uint8)
    charges[piece, bit] = charge
    out = {
        "event": event[first], "sensor": sensor[first],
        "u0": umin[labels[first]] + pu[first] * window, "v0": vmin[labels[first]] + pv[first] * window,
        "mask": mask, "charges": charges,
    }
    order = np.lexsort((out["v0"], out["u0"], out["sensor"], out["event"]))
    return {key: value[order] for key, value in out.items()}


def _fit_intensity(counts: np.ndarray, steps: int = 200) -> tuple[np.ndarray, float, float, list[float]]:
    """Maximum-likelihood ``log_rate`` per sensor, ``sigma`` and ``skew`` of ``n_es ~
    Poisson(exp(sigma z_e + skew (z_e^2 - 1) + log_rate_s))``, ``z_e ~ N(0, 1)``, from counts ``(events, sensors)``, the likelihood
    marginalised over each event's ``z`` on a fine grid. Given sigma, the rates' MLE is
    proportional to each sensor's total (the per-event factor is shared), so only the total rate
    , sigma and skew are optimised (L-BFGS), on the events grouped by their total count."""
    counts = np.asarray(counts, dtype=np.int64)
    per_sensor = counts.sum(axis=0).astype(np.float64)
    share = per_sensor / max(per_sensor.sum(), 1.0)
    totals, multiplicity = np.unique(counts.sum(axis=1), return_counts=True)
    n = torch.as_tensor(totals, dtype=torch.float64)
    m = torch.as_tensor(multiplicity, dtype=torch.float64)
    zs = torch.linspace(-Z_MAX, Z_MAX, Z_NODES, dtype=torch.float64)
    log_w = -0.5 * zs * zs + math.log((zs[1] - zs[0]).item() / math.sqrt(2.0 * math.pi))
    log_w[0] -= math.log(2.0)
    log_w[-1] -= math.log(2.0)
    mean = max(float(counts.sum(axis=1).mean()), 1e-9)
    var = float(counts.sum(axis=1).var())
    sigma0 = math.sqrt(max(math.log(max((var - mean) / (mean * mean), 1e-4) + 1.0), 1e-4))
    log_total = torch.tensor(math.log(mean) - 0.5 * sigma0 * sigma0, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(math.log(sigma0), dtype=torch.float64, requires_grad=True)
    skew = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_total, log_sigma, skew], lr=1.0, max_iter=steps, tolerance_grad=1e-10,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")
    history: list[float] = []

    def nll() -> Tensor:
        optimiser.zero_grad()
        level = log_total + torch.exp(log_sigma) * zs + skew * (zs * zs - 1.0)  # (nodes,) log of the total rate
        log_like = torch.logsumexp(log_w + n[:, None] * level - torch.exp(level), dim=1)
        loss = -(m * log_like).sum() / m.sum()
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    optimiser.step(nll)
    log_rate = float(log_total.detach()) + np.log(np.maximum(share, 1e-300))
    return log_rate, float(torch.exp(log_sigma.detach())), float(skew.detach()), history


def fit_tables(geometry: PixelGeometry, digits: dict[str, np.ndarray], n_events: int, window: int = WINDOW,
               cell: int = CELL, bank_cap: int = BANK_CAP) -> tuple[ClusterModel, dict[str, Any]]:
    """A :class:`ClusterModel` fitted by maximum likelihood to ``n_events`` events' digits, and
    what the fit found (events, clusters, patterns, sigma, the likelihood's history)."""
    pieces = decompose(geometry, digits, window)
    s, h, w_ = geometry.n_sensors, geometry.height, geometry.width
    counts = np.bincount(pieces["event"] * s + pieces["sensor"], minlength=n_events * s).reshape(n_events, s)
    log_rate, sigma, skew, history = _fit_intensity(counts)
    # patterns: ordered by mask, so the tables are a function of the training clusters alone
    masks, pattern = np.unique(pieces["mask"], return_inverse=True)
    pattern = pattern.ravel()
    edge = np.minimum(h - 1 - pieces["u0"], window - 1) * window + np.minimum(w_ - 1 - pieces["v0"], window - 1)
    pattern_counts = np.bincount(edge * len(masks) + pattern, minlength=window * window * len(masks)).reshape(
        window * window, len(masks))
    # an edge class never seen: the patterns seen anywhere that fit it
    bits = np.arange(window * window)
    fits_u = ((masks[:, None] >> bits) & 1).astype(bool)
    overall = pattern_counts.sum(axis=0)
    for e in np.flatnonzero(pattern_counts.sum(axis=1) == 0):
        eu, ev = divmod(int(e), window)
        allowed = ~np.any(fits_u & ((bits // window > eu) | (bits % window > ev))[None, :], axis=1)
        pattern_counts[e] = overall * allowed
    grid = (math.ceil(h / cell), math.ceil(w_ / cell))
    layer = geometry.layer_of().astype(np.int64)[pieces["sensor"]]
    cells = (pieces["u0"] // cell) * grid[1] + pieces["v0"] // cell
    layers = len(geometry.layers)
    cell_counts = np.bincount(layer * grid[0] * grid[1] + cells, minlength=layers * grid[0] * grid[1]).reshape(
        layers, grid[0] * grid[1])
    # the charge bank: per pattern, the first bank_cap charge vectors seen (training order)
    order = np.argsort(pattern, kind="stable")
    start_all = np.concatenate([[0], np.cumsum(np.bincount(pattern, minlength=len(masks)))[:-1]])
    rank = np.empty(len(pattern), dtype=np.int64)
    rank[order] = np.arange(len(pattern)) - start_all[pattern[order]]
    keep = rank < bank_cap
    bank_count = np.minimum(np.bincount(pattern, minlength=len(masks)), bank_cap)
    bank_start = np.concatenate([[0], np.cumsum(bank_count)[:-1]])
    bank = np.zeros((int(bank_count.sum()), window * window), dtype=np.uint8)
    bank[bank_start[pattern[keep]] + rank[keep]] = pieces["charges"][keep]
    model = ClusterModel(geometry, patterns=len(masks), bank=len(bank), window=window, cell=cell)
    state = {
        "log_rate": torch.as_tensor(log_rate, dtype=torch.float32),
        "log_sigma": torch.tensor(math.log(sigma), dtype=torch.float32),
        "skew": torch.tensor(skew, dtype=torch.float32),
        "cell_counts": torch.as_tensor(cell_counts, dtype=torch.int64),
        "pattern_counts": torch.as_tensor(pattern_counts, dtype=torch.int64),
        "pattern_masks": torch.as_tensor(masks, dtype=torch.int64),
        "bank_start": torch.as_tensor(bank_start, dtype=torch.int64),
        "bank_count": torch.as_tensor(np.maximum(bank_count, 1), dtype=torch.int64),
        "bank": torch.as_tensor(bank),
    }
    model.load_state_dict(state)
    info = {"events": int(n_events), "clusters": int(len(pattern)), "patterns": int(len(masks)),
            "bank": int(len(bank)), "sigma": sigma, "skew": skew, "nll": history[-1] if history else None}
    return model.eval(), info
