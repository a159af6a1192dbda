"""The ``clusters`` background model: a sparse, cluster-level generator conditioned on the sensor
and a shared per-event intensity, fitted by maximum likelihood to simulated events.

An event is drawn as a list of clusters, never as dense images, so a mostly empty detector costs
in proportion to its fired pixels (the generator calls :meth:`ClusterModel.digits`):

* intensity: a per-event level ``l`` (the log of the event's expected number of clusters) shared
  by the event's sensors, drawn from a nonparametric mixing distribution: piecewise uniform on a
  grid of ``LEVEL_NODES`` cells, its weights the NPMLE (EM on the grid) of the training events'
  cluster counts, so no form (log-normal, Gamma) is assumed. The event's ``z ~ N(0, 1)`` gives
  ``u = Phi(z)`` and ``l`` by the inverse CDF; a given ``intensity`` I (mean 1) sets
  ``exp(l) = I E[exp(l)]`` instead;
* counts: sensor ``s`` has ``n_s ~ Poisson(exp(l + log_rate[s]))`` clusters (``log_rate``: the
  log of the sensor's share of the clusters). Marginalised over ``l`` this is the likelihood the
  fit maximises; it gives every sensor's mean occupancy and the correlation of an event's sensors
  (through the shared ``l``);
* positions: a cluster's anchor (the top-left corner of its bounding box) falls in a cell of a
  coarse grid (``CELL`` x ``CELL`` pixels) drawn from a categorical per layer, uniformly within
  the cell;
* shape: a pattern of fired pixels within a ``WINDOW`` x ``WINDOW`` box from the anchor, drawn
  from a categorical conditioned on how close the anchor is to the sensor's far edges (the
  "edge class", so clusters cut by an edge are drawn as often as they were seen) and on the
  cluster's density class: the event's number of clusters times the sensor's share, binned at
  the training clusters' quantiles (``DENSITY_CLASSES``). Where clusters are dense, more of the
  training clusters are several overlapping ones merged into one component: fewer, larger
  clusters. Without this class the fired pixels of a sensor grew less than linearly with the
  intensity and every inter-sensor correlation came out ~0.01 low (merged components are still
  drawn as units: the inner layer's occupancy variance at a given intensity is ~3% high, the
  correlations ~0.006 low, at the default geometry);
* charges: the 8-bit charges of the pattern's pixels, drawn jointly from a bank of charge vectors
  seen with that pattern in training (the empirical distribution, the non-parametric maximum-
  likelihood estimate; at most ``BANK_CAP`` per pattern, the first seen). The bank is one flat
  uint8 array holding only the pattern's fired pixels (a vector of a k-pixel pattern is k bytes,
  in bit order), so a large cap costs little: with 2,048 vectors per pattern the common patterns'
  charge spectra were sampling-limited (mean charge +1.6%, EMD 0.36 ADC at belle2 on 40,000
  events; 0.08% and 0.04 ADC with 16,384).

The training clusters are the 8-connected components of the simulated events' digits
(:func:`tracerflow.background.quality.cluster_labels`); one larger than the window is cut into
window-sized pieces, so every training pixel is kept. Components never touch, so neither do the
drawn clusters: one that would touch or overlap a cluster drawn before it on its sensor is drawn
again (position, shape and charges) from the next of its ``TRIES`` sets of numbers (the last
stays where it falls; pixels of overlapping clusters then add their charges, capped at 255).
Drawn clusters that touched would be joined into larger clusters than the training ones.

Every table is a state-dict tensor (counts as int64, charges as uint8, the fitted intensity and
edges float32); :meth:`ClusterModel.config` records the table sizes, so a payload rebuilds the
model through the conditions store like the image models.

Determinism: :meth:`ClusterModel.sample_latents` draws, from the event's own ``torch.Generator``,
the event's ``z`` and a 63-bit key; every other random number of the event (counts, and ``TRIES``
sets of position, pattern and charge numbers per cluster) comes from a NumPy Philox generator keyed
by that key, one event at a time, and the event's level is computed from ``z`` with scalar
arithmetic. Everything after that is elementwise float64/integer work, sorts and searches within
an event's own sensors, so an event's digits do not depend on the other events of the batch, on
their order or on the thread count.
"""
from __future__ import annotations

import bisect
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
BANK_CAP = 16384
#: Cells of the grid of the per-event level's mixing distribution (spanning the training events'
#: log counts, one e-fold beyond each end: ~0.01 wide at the default geometry).
LEVEL_NODES = 512
#: EM steps of its fit, from uniform weights (the variance it sets is stable after ~10).
LEVEL_STEPS = 400
#: Density classes a pattern is conditioned on (quantiles of the training clusters' densities).
DENSITY_CLASSES = 6
#: Sets of numbers per cluster: where it is drawn first, and again each time it touches another.
TRIES = 5
#: Numbers per set: cell, u within the cell, v within the cell, pattern, charge vector.
_DRAWS = 5


def shares(log_rate: np.ndarray) -> np.ndarray:
    """Each sensor's share of an event's clusters, from the (float32) ``log_rate``, in float64:
    what the density class multiplies the event's cluster count by, in the fit and in the draw."""
    rate = np.exp(np.asarray(log_rate, dtype=np.float32).astype(np.float64))
    return rate / max(float(rate.sum()), 1e-300)


def mask_bits(masks: np.ndarray, n: int) -> np.ndarray:
    """The pattern masks' first ``n`` bits, ``(patterns, n)`` bool (bit ``du * window + dv``)."""
    return ((np.asarray(masks, dtype=np.int64)[:, None] >> np.arange(n)) & 1).astype(bool)


class ClusterModel(nn.Module):
    """See the module docstring. ``patterns``: the number of patterns; ``bank``: the bytes of the
    flat charge bank."""

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
        self.log_rate = nn.Parameter(torch.full((s,), -math.log(s)))
        self.register_buffer("level_range", torch.tensor([-1.0, 1.0]))
        self.register_buffer("level_weight", torch.ones(LEVEL_NODES))
        self.register_buffer("density_edges", torch.zeros(DENSITY_CLASSES - 1))
        self.register_buffer("cell_counts", torch.ones(layers, self.grid[0] * self.grid[1], dtype=torch.int64))
        self.register_buffer("pattern_counts", torch.ones(DENSITY_CLASSES * window * window, patterns,
                                                          dtype=torch.int64))
        self.register_buffer("pattern_masks", torch.ones(patterns, dtype=torch.int64))
        self.register_buffer("bank_start", torch.zeros(patterns, dtype=torch.int64))
        self.register_buffer("bank_count", torch.ones(patterns, dtype=torch.int64))
        self.register_buffer("bank", torch.full((bank,), 30, dtype=torch.uint8))
        self._tables: dict[str, Any] | None = None

    # ------------------------------------------------------------------ interface

    @staticmethod
    def options_of_state(state: dict[str, Tensor]) -> dict[str, Any]:
        """The table sizes (``patterns``, ``bank``, ``window``) of a state dict of this model."""
        window = math.isqrt(int(state["pattern_counts"].shape[0]) // DENSITY_CLASSES)
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

    def tables(self) -> dict[str, Any]:
        """The tables as NumPy arrays (float64 CDFs), cached until a state dict is loaded."""
        if self._tables is None:
            w = self.window
            cells = self.cell_counts.detach().cpu().numpy().astype(np.float64)
            layers = len(self.geometry.layers)
            cell_cdf = np.cumsum(cells, axis=1) / np.maximum(cells.sum(axis=1, keepdims=True), 1.0)
            pattern = self.pattern_counts.detach().cpu().numpy().astype(np.float64)
            pattern_cdf = np.cumsum(pattern, axis=1) / np.maximum(pattern.sum(axis=1, keepdims=True), 1.0)
            lo, hi = (float(x) for x in self.level_range.detach().cpu().numpy().astype(np.float64))
            weight = np.maximum(self.level_weight.detach().cpu().numpy().astype(np.float64), 0.0)
            weight = weight / max(float(weight.sum()), 1e-300)
            bits = mask_bits(self.pattern_masks.detach().cpu().numpy(), w * w)
            k = np.arange(w * w)
            self._tables = {
                "log_rate": self.log_rate.detach().cpu().numpy().astype(np.float64),
                "share": shares(self.log_rate.detach().cpu().numpy()),
                "level_lo": lo,
                "level_hi": hi,
                "level_weight": weight,
                "level_cdf": np.cumsum(weight).tolist(),  # a list: bisect, one event at a time
                "log_mean_level": _log_mean_level(lo, hi, weight),
                "density_edges": self.density_edges.detach().cpu().numpy().astype(np.float64),
                # each row's CDF shifted by its row index: one searchsorted for all rows
                "cell_cdf": (cell_cdf + np.arange(layers)[:, None]).ravel(),
                "pattern_cdf": (pattern_cdf + np.arange(len(pattern))[:, None]).ravel(),
                "pattern_bits": bits,
                # rows and columns of each pattern's bounding box (its anchor is the box's corner)
                "pattern_rows": np.max(np.where(bits, k // w + 1, 0), axis=1),
                "pattern_cols": np.max(np.where(bits, k % w + 1, 0), axis=1),
                "n_cells": np.int64(cells.shape[1]),
                "n_patterns": np.int64(pattern.shape[1]),
                "bank": self.bank.detach().cpu().numpy(),
                # each pattern's fired pixels (its vectors' length in the bank) and their bits in order
                "pattern_size": bits.sum(axis=1),
                "pattern_bit": np.argsort(~bits, axis=1, kind="stable"),
                "bank_start": self.bank_start.detach().cpu().numpy(),
                "bank_count": self.bank_count.detach().cpu().numpy(),
                "layer": self.geometry.layer_of().astype(np.int64),
            }
        return self._tables

    def level_of(self, z: float) -> float:
        """The level ``l`` of an event with latent ``z``: ``u = Phi(z)`` through the inverse CDF of
        the piecewise-uniform mixing distribution (scalar arithmetic: the same bits in any batch)."""
        t = self.tables()
        u = 0.5 * math.erfc(-float(z) / math.sqrt(2.0))
        cdf = t["level_cdf"]
        j = min(bisect.bisect_right(cdf, u), len(cdf) - 1)
        below = cdf[j - 1] if j else 0.0
        mass = cdf[j] - below
        within = min(max((u - below) / mass, 0.0), 1.0) if mass > 0 else 0.5
        return t["level_lo"] + (t["level_hi"] - t["level_lo"]) * (j + within) / len(cdf)

    def forward(self, latents: dict[str, Tensor], intensity: Tensor | None = None) -> dict[str, np.ndarray]:
        return self.digits(latents, intensity)

    def _place(self, layer: np.ndarray, density: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, ...]:
        """Anchors ``(u0, v0)`` and patterns of clusters of these layers and density classes, from
        one set of numbers each ``(clusters, _DRAWS)``."""
        t, g, w = self.tables(), self.geometry, self.window
        cell = np.searchsorted(t["cell_cdf"], layer + np.minimum(draws[:, 0], 1.0 - 1e-12), side="right")
        cell = np.minimum(cell - layer * t["n_cells"], t["n_cells"] - 1)
        cu, cv = np.divmod(cell, self.grid[1])
        u0 = cu * self.cell + np.floor(draws[:, 1] * np.minimum(self.cell, g.height - cu * self.cell)).astype(np.int64)
        v0 = cv * self.cell + np.floor(draws[:, 2] * np.minimum(self.cell, g.width - cv * self.cell)).astype(np.int64)
        row = density * (w * w) + np.minimum(g.height - 1 - u0, w - 1) * w + np.minimum(g.width - 1 - v0, w - 1)
        pattern = np.searchsorted(t["pattern_cdf"], row + np.minimum(draws[:, 3], 1.0 - 1e-12), side="right")
        pattern = np.minimum(pattern - row * t["n_patterns"], t["n_patterns"] - 1)
        return u0, v0, pattern

    def _neighbours(self, group: np.ndarray, u0: np.ndarray, v0: np.ndarray,
                    which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (``earlier``, ``later``: indices, ``earlier < later``) of clusters of one sensor
        of one event (``group``) whose anchors are at most a window apart in ``u`` and in ``v``, one
        of them in ``which``: the only clusters that can touch. Anchors are binned in squares of
        ``window + 1`` pixels and searched in the 3 x 3 squares around, so the cost grows with the
        clusters and their neighbours, not with the square of a sensor's clusters."""
        g, w = self.geometry, self.window
        side = w + 1
        rows, cols = -(-g.height // side) + 2, -(-g.width // side) + 2  # with an empty square around
        square = (group * rows + u0 // side + 1) * cols + v0 // side + 1
        order = np.argsort(square, kind="stable")
        ordered = square[order]
        mine, other = [], []
        for du in (-1, 0, 1):  # a row of three squares is one range of the sorted squares
            lo = np.searchsorted(ordered, square[which] + du * cols - 1, side="left")
            found = np.searchsorted(ordered, square[which] + du * cols + 1, side="right") - lo
            mine.append(np.repeat(which, found))
            within = np.arange(found.sum()) - np.repeat(np.cumsum(found) - found, found)
            other.append(order[np.repeat(lo, found) + within])
        mine, other = np.concatenate(mine), np.concatenate(other)
        listed = np.zeros(len(group), dtype=bool)
        listed[which] = True
        keep = (np.abs(u0[mine] - u0[other]) <= w) & (np.abs(v0[mine] - v0[other]) <= w) \
            & (mine != other) & (~listed[other] | (mine < other))  # each pair once
        mine, other = mine[keep], other[keep]
        return np.minimum(mine, other), np.maximum(mine, other)

    def _touching(self, earlier: np.ndarray, later: np.ndarray, u0: np.ndarray, v0: np.ndarray,
                  pattern: np.ndarray) -> np.ndarray:
        """Whether each pair of clusters (``earlier``, ``later``: indices of clusters of one sensor
        of one event) touches or overlaps (8-connectivity; pixels cut by the sensor's edge do not
        count)."""
        t, g, w = self.tables(), self.geometry, self.window
        du, dv = u0[later] - u0[earlier], v0[later] - v0[earlier]
        pe, pl = pattern[earlier], pattern[later]
        touching = np.zeros(len(earlier), dtype=bool)
        close = np.flatnonzero((du <= t["pattern_rows"][pe]) & (-du <= t["pattern_rows"][pl])
                               & (dv <= t["pattern_cols"][pe]) & (-dv <= t["pattern_cols"][pl]))  # boxes within a pixel
        if not len(close):
            return touching
        bits = t["pattern_bits"]
        k = np.arange(w * w)
        pixels = []
        for cluster in (earlier[close], later[close]):
            u, v = u0[cluster][:, None] + k // w, v0[cluster][:, None] + k % w
            pixels.append((u, v, bits[pattern[cluster]] & (u < g.height) & (v < g.width)))
        (ue, ve, fe), (ul, vl, fl) = pixels
        near = (np.abs(ue[:, :, None] - ul[:, None, :]) <= 1) & (np.abs(ve[:, :, None] - vl[:, None, :]) <= 1)
        touching[close] = np.any(near & fe[:, :, None] & fl[:, None, :], axis=(1, 2))
        return touching

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
        counts, draws = [], []
        bits = np.random.Philox(key=0)  # set to each event's key and a zero counter: Philox(key=key), cheaper
        rng = np.random.Generator(bits)
        for i in range(events):
            bits.state = {"bit_generator": "Philox", "state": {"counter": np.zeros(4, dtype=np.uint64),
                          "key": np.array([int(keys[i]), 0], dtype=np.uint64)}, "buffer": np.zeros(4, dtype=np.uint64),
                          "buffer_pos": 4, "has_uint32": 0, "uinteger": 0}
            if intensity is None:
                level = self.level_of(z[i])
            else:
                level = math.log(max(intensity[i], 1e-300)) + t["log_mean_level"]
            n = rng.poisson(np.exp(level + t["log_rate"]))
            counts.append(n)
            draws.append(rng.random((int(n.sum()), TRIES, _DRAWS)))
        counts = np.stack(counts)  # (events, sensors)
        draws = np.concatenate(draws) if draws else np.zeros((0, TRIES, _DRAWS))
        flat = counts.ravel()
        group = np.repeat(np.arange(len(flat), dtype=np.int64), flat)
        event, sensor = np.divmod(group, g.n_sensors)
        layer = t["layer"][sensor]
        density = np.searchsorted(t["density_edges"], counts.sum(axis=1)[event] * t["share"][sensor], side="right")
        # placed with their first set of numbers, then again while they touch an earlier cluster of
        # their sensor: every pair of near clusters at first, then the pairs with one just moved
        tried = np.zeros(len(group), dtype=np.int64)
        u0, v0, pattern = self._place(layer, density, draws[:, 0])
        moved = np.arange(len(group))
        for attempt in range(1, TRIES):
            earlier, later = self._neighbours(group, u0, v0, moved)
            moved = np.unique(later[self._touching(earlier, later, u0, v0, pattern)])
            if not len(moved):
                break
            tried[moved] = attempt
            u0[moved], v0[moved], pattern[moved] = self._place(layer[moved], density[moved], draws[moved, attempt])
        pick = draws[np.arange(len(group)), tried, 4]
        size = t["pattern_size"][pattern]
        offset = t["bank_start"][pattern] + np.floor(pick * t["bank_count"][pattern]).astype(np.int64) * size
        cluster = np.repeat(np.arange(len(group)), size)
        j = np.arange(len(cluster)) - np.repeat(np.cumsum(size) - size, size)  # the pixel's rank in its pattern
        k = t["pattern_bit"][pattern[cluster], j]
        q = t["bank"][offset[cluster] + j].astype(np.int64)
        fired = q > 0
        cluster, k, q = cluster[fired], k[fired], q[fired]
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


def _log_mean_level(lo: float, hi: float, weight: np.ndarray) -> float:
    """``log E[exp(l)]`` of the piecewise-uniform level distribution on ``[lo, hi]`` (cells' weights)."""
    edges = lo + (hi - lo) * np.arange(len(weight) + 1) / len(weight)
    width = (hi - lo) / len(weight)
    mean = float(np.sum(weight * (np.exp(edges[1:]) - np.exp(edges[:-1])))) / width
    return math.log(max(mean, 1e-300))


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


def _fit_intensity(counts: np.ndarray, nodes: int = LEVEL_NODES,
                   steps: int = LEVEL_STEPS) -> tuple[np.ndarray, tuple[float, float], np.ndarray, list[float]]:
    """Maximum-likelihood ``log_rate`` per sensor and mixing distribution of the level ``l`` of
    ``n_es ~ Poisson(exp(l_e + log_rate_s))`` from counts ``(events, sensors)``. Given the levels,
    the rates' MLE is proportional to each sensor's total, so ``log_rate`` is the log of each
    sensor's share and the event's total count ``~ Poisson(exp(l))`` is what the levels are
    fitted to: the nonparametric MLE of their distribution (NPMLE), weights on a grid of ``nodes``
    cells spanning the events' log totals with an e-fold beyond each end, by ``steps`` EM steps
    from uniform weights, on the events grouped by their total. Returns ``log_rate``, the grid's
    range (float32 values), its weights and the mean negative log-likelihood per event by step."""
    from scipy.special import gammaln

    counts = np.asarray(counts, dtype=np.int64)
    per_sensor = counts.sum(axis=0).astype(np.float64)
    log_rate = np.log(np.maximum(per_sensor / max(per_sensor.sum(), 1.0), 1e-300))
    totals, multiplicity = np.unique(counts.sum(axis=1), return_counts=True)
    lowest, highest = (float(totals.min()), float(totals.max())) if len(totals) else (0.0, 0.0)
    lo = float(np.float32(math.log(max(lowest, 0.5)) - 1.0))
    hi = float(np.float32(math.log(max(highest, 1.0)) + 1.0))
    level = lo + (hi - lo) * (np.arange(nodes) + 0.5) / nodes  # the cells' centres
    n = totals.astype(np.float64)[:, None]
    log_like = n * level[None, :] - np.exp(level)[None, :] - gammaln(n + 1.0)
    top = log_like.max(axis=1, keepdims=True)
    like = np.exp(log_like - top)
    share = multiplicity / multiplicity.sum()
    weight = np.full(nodes, 1.0 / nodes)
    history: list[float] = []
    for _ in range(steps):
        joint = like * weight[None, :]
        marginal = joint.sum(axis=1)
        history.append(float(-(share * (np.log(marginal) + top[:, 0])).sum()))
        weight = (share[:, None] * (joint / marginal[:, None])).sum(axis=0)
    return log_rate, (lo, hi), weight, history


def fit_tables(geometry: PixelGeometry, digits: dict[str, np.ndarray], n_events: int, window: int = WINDOW,
               cell: int = CELL, bank_cap: int = BANK_CAP) -> tuple[ClusterModel, dict[str, Any]]:
    """A :class:`ClusterModel` fitted by maximum likelihood to ``n_events`` events' digits, and
    what the fit found (events, clusters, patterns, the level distribution's spread, the
    likelihood)."""
    pieces = decompose(geometry, digits, window)
    s, h, w_ = geometry.n_sensors, geometry.height, geometry.width
    counts = np.bincount(pieces["event"] * s + pieces["sensor"], minlength=n_events * s).reshape(n_events, s)
    log_rate, (lo, hi), level_weight, history = _fit_intensity(counts)
    log_rate32 = torch.as_tensor(log_rate, dtype=torch.float32)
    # density classes: the event's cluster count times the sensor's share, at the clusters' quantiles
    density = counts.sum(axis=1)[pieces["event"]] * shares(log_rate32.numpy())[pieces["sensor"]]
    edges = np.quantile(density, np.arange(1, DENSITY_CLASSES) / DENSITY_CLASSES) if len(density) else \
        np.zeros(DENSITY_CLASSES - 1)
    edges32 = torch.as_tensor(edges, dtype=torch.float32)
    density_class = np.searchsorted(edges32.numpy().astype(np.float64), density, side="right")
    # patterns: ordered by mask, so the tables are a function of the training clusters alone
    masks, pattern = np.unique(pieces["mask"], return_inverse=True)
    pattern = pattern.ravel()
    classes, p = window * window, len(masks)
    edge = np.minimum(h - 1 - pieces["u0"], window - 1) * window + np.minimum(w_ - 1 - pieces["v0"], window - 1)
    overall = np.bincount(edge * p + pattern, minlength=classes * p).reshape(classes, p)
    # an edge class never seen: the patterns seen anywhere that fit it
    bits = np.arange(classes)
    fired = mask_bits(masks, classes)
    seen = overall.sum(axis=0)
    for e in np.flatnonzero(overall.sum(axis=1) == 0):
        eu, ev = divmod(int(e), window)
        allowed = ~np.any(fired & ((bits // window > eu) | (bits % window > ev))[None, :], axis=1)
        overall[e] = seen * allowed
    pattern_counts = np.bincount((density_class * classes + edge) * p + pattern,
                                 minlength=DENSITY_CLASSES * classes * p).reshape(DENSITY_CLASSES, classes, p)
    empty = pattern_counts.sum(axis=2) == 0  # a density and edge class never seen together: the edge class's
    pattern_counts[empty] = np.broadcast_to(overall, pattern_counts.shape)[empty]
    grid = (math.ceil(h / cell), math.ceil(w_ / cell))
    layer = geometry.layer_of().astype(np.int64)[pieces["sensor"]]
    cells = (pieces["u0"] // cell) * grid[1] + pieces["v0"] // cell
    layers = len(geometry.layers)
    cell_counts = np.bincount(layer * grid[0] * grid[1] + cells, minlength=layers * grid[0] * grid[1]).reshape(
        layers, grid[0] * grid[1])
    # the charge bank: per pattern, the first bank_cap charge vectors seen (training order), each
    # vector only the pattern's fired pixels in bit order, the patterns' vectors one after another
    order = np.argsort(pattern, kind="stable")
    start_all = np.concatenate([[0], np.cumsum(np.bincount(pattern, minlength=len(masks)))[:-1]])
    rank = np.empty(len(pattern), dtype=np.int64)
    rank[order] = np.arange(len(pattern)) - start_all[pattern[order]]
    kept = order[rank[order] < bank_cap]  # by pattern, then rank
    bank_count = np.minimum(np.bincount(pattern, minlength=len(masks)), bank_cap)
    size = fired.sum(axis=1)
    bank_start = np.concatenate([[0], np.cumsum(bank_count * size)[:-1]])
    bank = pieces["charges"][kept][fired[pattern[kept]]]  # row-major: each vector's fired pixels in bit order
    model = ClusterModel(geometry, patterns=len(masks), bank=len(bank), window=window, cell=cell)
    state = {
        "log_rate": log_rate32,
        "level_range": torch.tensor([lo, hi], dtype=torch.float32),
        "level_weight": torch.as_tensor(level_weight, dtype=torch.float32),
        "density_edges": edges32,
        "cell_counts": torch.as_tensor(cell_counts, dtype=torch.int64),
        "pattern_counts": torch.as_tensor(pattern_counts.reshape(DENSITY_CLASSES * classes, p), dtype=torch.int64),
        "pattern_masks": torch.as_tensor(masks, dtype=torch.int64),
        "bank_start": torch.as_tensor(bank_start, dtype=torch.int64),
        "bank_count": torch.as_tensor(np.maximum(bank_count, 1), dtype=torch.int64),
        "bank": torch.as_tensor(bank),
    }
    model.load_state_dict(state)
    # what the fitted levels say: the spread of l and the relative variance of exp(l) (what sets the correlations)
    t = model.tables()
    centre = t["level_lo"] + (t["level_hi"] - t["level_lo"]) * (np.arange(LEVEL_NODES) + 0.5) / LEVEL_NODES
    mean_level = float(np.sum(t["level_weight"] * centre))
    sigma = math.sqrt(max(float(np.sum(t["level_weight"] * (centre - mean_level) ** 2)), 0.0))
    scale = np.exp(centre - t["log_mean_level"])
    info = {"events": int(n_events), "clusters": int(len(pattern)), "patterns": int(len(masks)),
            "bank": int(len(bank)), "sigma": sigma,
            "intensity_variance": float(np.sum(t["level_weight"] * scale * scale)) - 1.0,
            "density_edges": [float(x) for x in edges32], "nll": history[-1] if history else None}
    return model.eval(), info
