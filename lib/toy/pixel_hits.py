"""The signal hits of the toy's tracks in its pixel detector: where each sensor sits in (eta, phi)
and the digits a track leaves when it crosses the layers.

Placement. Layer ``l`` (radius :func:`layer_radii`) holds ``n_l`` sensors. When ``n_l`` is even
they form ``n_l / 2`` ladders of two halves, one for ``eta < 0`` and one for ``eta >= 0``; when it
is odd, ``n_l`` ladders of one sensor covering the whole eta range. Ladder ``k`` of ``L`` covers
``phi`` in ``[-pi + k 2pi/L, -pi + (k+1) 2pi/L)``, a sensor covers ``|eta| < ETA_MAX`` in its half.
u-cells run along phi (``height`` cells over the ladder's phi span), v-cells along eta (``width``
cells over the half's eta span). Sensors are numbered layer by layer from the innermost, ladder
by ladder, then half (as :meth:`PixelGeometry.layer_of`).

Hits. A track with ``|eta| < ETA_MAX`` crosses every layer; at radius ``r`` its phi is bent by
``-charge * 0.3 * B * r / (2 pt)`` (B in T, r in m, pt in GeV), its eta is unchanged. At each
crossing it deposits a Moyal total charge (a minimum-ionising particle, above the background's
typical cluster), shared by a square charge cloud of half-width :data:`CLOUD_HALF_WIDTH` pixels
between the crossed pixel and, near an edge, its neighbour in u and/or v: 1 to 4 pixels per
crossing (charge falling outside the sensor is lost). Pixels of one event hit more than once add
up; each fired pixel gets Gaussian noise, pixels below :data:`THRESHOLD` ADU are dropped (zero
suppression) and the rest stored as ``min(floor(q), 255)`` 8-bit ADC.

Contract with its neighbours: geometry from :mod:`.pixels`; digits in the layout of the
reference background simulation (:mod:`.pixel_background`): flat ``event`` (int32), ``sensor``,
``ucell``, ``vcell`` (int16) and ``charge`` (uint8), one digit per pixel, sorted by event, sensor,
ucell, vcell. The toy sample writer (:mod:`.sample`) stores them as the ``hit_*`` branches (with
``hit_is_background`` 0), the background overlay in BuildEvents adds background digits to them,
and the hit event template reads them; :func:`pixel_position` gives any pixel's (layer, eta,
phi). Nothing here imports torch or luigi.
"""
from __future__ import annotations

import numpy as np

from .pixels import PixelGeometry, geometry as as_geometry

#: The sensors cover |eta| < ETA_MAX; tracks beyond leave no hit.
ETA_MAX = 2.5
#: Solenoid field, T.
B_FIELD = 1.5
#: Radius of the innermost layer and the step to the next ones, mm (layers at 14, 22, 30, ... mm).
FIRST_RADIUS_MM = 14.0
RADIUS_STEP_MM = 8.0
#: The crossing's total charge: Moyal location and scale, ADU.
CHARGE_MPV = 45.0
CHARGE_WIDTH = 8.0
#: Gaussian noise per fired pixel, ADU.
NOISE = 1.5
#: Zero suppression: pixels below this many ADU are not stored.
THRESHOLD = 7.0
#: Half-width of the square charge cloud, in pixels (< 0.5: at most one neighbour per direction).
CLOUD_HALF_WIDTH = 0.25

_KEYS = ("event", "sensor", "ucell", "vcell", "charge")


def layer_radii(geometry: PixelGeometry | str) -> np.ndarray:
    """The radius of each layer, mm (innermost first)."""
    geo = as_geometry(geometry)
    return FIRST_RADIUS_MM + RADIUS_STEP_MM * np.arange(len(geo.layers), dtype=np.float64)


def _layer_layout(geo: PixelGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer: its first sensor, its ladders and its halves (2 or 1)."""
    n = np.asarray(geo.layers, dtype=np.int64)
    halves = np.where(n % 2 == 0, 2, 1)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    return first, n // halves, halves


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Phi folded into [-pi, pi)."""
    return np.mod(np.asarray(phi, dtype=np.float64) + np.pi, 2.0 * np.pi) - np.pi


def bent_phi(phi: np.ndarray, pt: np.ndarray, charge: np.ndarray, radius_mm: float) -> np.ndarray:
    """A track's phi where it crosses radius ``radius_mm``, wrapped into [-pi, pi)."""
    curvature = 0.3 * B_FIELD * (radius_mm * 1e-3) / (2.0 * np.asarray(pt, dtype=np.float64))
    return wrap_phi(np.asarray(phi, dtype=np.float64) - np.asarray(charge, dtype=np.float64) * curvature)


def pixel_of(geometry: PixelGeometry | str, layer: int, eta: np.ndarray, phi: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where points (eta, phi) lie on layer ``layer``: sensor, ucell, vcell (int64) and the
    continuous cell coordinates ``fu``, ``fv`` on that sensor (``ucell = floor(fu)``). Points with
    ``|eta| >= ETA_MAX`` get a clipped, meaningless answer: select them out first."""
    geo = as_geometry(geometry)
    first, ladders, halves = _layer_layout(geo)
    n_ladders, n_halves = int(ladders[layer]), int(halves[layer])
    eta = np.asarray(eta, dtype=np.float64)
    span = 2.0 * np.pi / n_ladders
    x = (wrap_phi(phi) + np.pi) / span
    ladder = np.clip(np.floor(x), 0, n_ladders - 1).astype(np.int64)
    fu = (x - ladder) * geo.height
    if n_halves == 2:
        half = (eta >= 0.0).astype(np.int64)
        fv = (eta + ETA_MAX * (1 - half)) / ETA_MAX * geo.width
    else:
        half = np.zeros(len(eta), dtype=np.int64)
        fv = (eta + ETA_MAX) / (2.0 * ETA_MAX) * geo.width
    ucell = np.clip(np.floor(fu), 0, geo.height - 1).astype(np.int64)
    vcell = np.clip(np.floor(fv), 0, geo.width - 1).astype(np.int64)
    sensor = first[layer] + ladder * n_halves + half
    return sensor, ucell, vcell, fu, fv


def pixel_position(geometry: PixelGeometry | str, sensor: np.ndarray, ucell: np.ndarray, vcell: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """The centre of each pixel: ``layer`` (int16), ``eta`` and ``phi`` (float32, phi in [-pi, pi))."""
    geo = as_geometry(geometry)
    first, ladders, halves = _layer_layout(geo)
    sensor = np.asarray(sensor, dtype=np.int64)
    if len(sensor) and (sensor.min() < 0 or sensor.max() >= geo.n_sensors):
        raise ValueError(f"sensor ids must lie in [0, {geo.n_sensors})")
    layer = geo.layer_of().astype(np.int64)[sensor]
    local = sensor - first[layer]
    n_halves = halves[layer]
    ladder, half = np.divmod(local, n_halves)
    u = np.asarray(ucell, dtype=np.float64) + 0.5
    v = np.asarray(vcell, dtype=np.float64) + 0.5
    phi = -np.pi + (ladder + u / geo.height) * (2.0 * np.pi / ladders[layer])
    eta_span = 2.0 * ETA_MAX / n_halves
    eta = -ETA_MAX + half * ETA_MAX + v / geo.width * eta_span
    return {"layer": layer.astype(np.int16), "eta": eta.astype(np.float32), "phi": phi.astype(np.float32)}


def _edge_share(frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For cell coordinates' fractional parts: the neighbour's direction (-1 / +1) and the
    fraction of the cloud that falls into it."""
    side = np.where(frac < 0.5, -1, 1)
    w = CLOUD_HALF_WIDTH
    share = np.where(side < 0, np.maximum(w - frac, 0.0), np.maximum(frac + w - 1.0, 0.0)) / (2.0 * w)
    return side, share


def _empty() -> dict[str, np.ndarray]:
    return {"event": np.zeros(0, np.int32), "sensor": np.zeros(0, np.int16), "ucell": np.zeros(0, np.int16),
            "vcell": np.zeros(0, np.int16), "charge": np.zeros(0, np.uint8)}


def signal_hits(geometry: PixelGeometry | str, rng: np.random.Generator, eta: np.ndarray, phi: np.ndarray,
                pt: np.ndarray, charge: np.ndarray, event: np.ndarray, n_events: int) -> dict[str, np.ndarray]:
    """The digits the tracks leave: flat ``event`` (int32, the track's ``event`` in ``0..n_events-1``),
    ``sensor``, ``ucell``, ``vcell`` (int16) and ``charge`` (uint8 ADC), one per pixel, sorted by
    event, sensor, ucell, vcell. ``eta``, ``phi``, ``pt`` (GeV), ``charge`` (+-1) and ``event``: one
    entry per track. The digits depend only on the tracks and the state of ``rng``."""
    geo = as_geometry(geometry)
    eta = np.asarray(eta, dtype=np.float64)
    phi, pt = np.asarray(phi, dtype=np.float64), np.asarray(pt, dtype=np.float64)
    charge, event = np.asarray(charge, dtype=np.float64), np.asarray(event, dtype=np.int64)
    if not (len(eta) == len(phi) == len(pt) == len(charge) == len(event)):
        raise ValueError("eta, phi, pt, charge and event need one entry per track")
    if len(event) and (event.min() < 0 or event.max() >= n_events):
        raise ValueError(f"track events must lie in [0, {n_events})")
    inside = np.abs(eta) < ETA_MAX
    eta, phi, pt, charge, event = eta[inside], phi[inside], pt[inside], charge[inside], event[inside]
    n = len(eta)
    pixels_per_event = geo.n_pixels
    keys, deposits = [], []
    for layer, radius in enumerate(layer_radii(geo)):
        sensor, ucell, vcell, fu, fv = pixel_of(geo, layer, eta, bent_phi(phi, pt, charge, float(radius)))
        z = rng.standard_normal(n)
        total = np.maximum(CHARGE_MPV + CHARGE_WIDTH * -np.log(np.maximum(z * z, 1e-300)), 0.0)
        side_u, share_u = _edge_share(fu - ucell)
        side_v, share_v = _edge_share(fv - vcell)
        for du, fraction_u in ((0, 1.0 - share_u), (1, share_u)):
            for dv, fraction_v in ((0, 1.0 - share_v), (1, share_v)):
                u, v = ucell + du * side_u, vcell + dv * side_v
                q = total * fraction_u * fraction_v
                keep = (q > 0.0) & (u >= 0) & (u < geo.height) & (v >= 0) & (v < geo.width)
                keys.append(((event[keep] * geo.n_sensors + sensor[keep]) * geo.height + u[keep]) * geo.width
                            + v[keep])
                deposits.append(q[keep])
    if not keys or not sum(len(k) for k in keys):
        return _empty()
    pixels, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=np.concatenate(deposits), minlength=len(pixels))
    summed += rng.normal(0.0, NOISE, len(pixels))
    fired = summed >= THRESHOLD
    pixels, adc = pixels[fired], np.minimum(np.floor(summed[fired]), 255).astype(np.uint8)
    ev, rest = np.divmod(pixels, pixels_per_event)
    s, rest = np.divmod(rest, geo.height * geo.width)
    uu, vv = np.divmod(rest, geo.width)
    return {"event": ev.astype(np.int32), "sensor": s.astype(np.int16), "ucell": uu.astype(np.int16),
            "vcell": vv.astype(np.int16), "charge": adc}
