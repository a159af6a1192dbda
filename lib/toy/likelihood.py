"""Exact densities of the toy track model and the Bayes-optimal per-jet log-likelihood ratios.

The likelihood of a jet is conditional on its pt and eta (what a tagger sees after kinematic
resampling): log Poisson(n_tracks | mu_f(pt)) + sum over tracks of log sum_o w_fo p_o(track).
Each origin density p_o is the product of the truncated-exponential density of the pt fraction
x = trk_pt/jet_pt, two Gaussians for (deta, dphi) and the impact-parameter density of (d0, z0).
The track charge is uninformative and the resolutions are functions of trk_pt, so neither
enters; densities are in x rather than trk_pt, a flavour-independent Jacobian that cancels.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln, log_ndtr

from .detector import MIN_TRACK_PT, ORIGINS, angular_scale, ip_widths, mean_n_tracks, origin_table

LOG_2PI = float(np.log(2.0 * np.pi))


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    """Stable log(sum(exp(values))) along ``axis``; all -inf gives -inf."""
    peak = np.max(values, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(values - peak), axis=axis))
    return total + np.squeeze(peak, axis=axis)


def log_normal_density(value: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Log density of N(0, sigma^2) at ``value``."""
    value = np.asarray(value, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    return -0.5 * (value / sigma) ** 2 - np.log(sigma) - 0.5 * LOG_2PI


def log_pt_fraction_density(x: np.ndarray, x_min: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Log density of an exponential with ``mean`` truncated to [x_min, 1], evaluated at ``x``."""
    x = np.asarray(x, dtype=np.float64)
    x_min = np.asarray(x_min, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    return -(x - x_min) / mean - np.log(mean) - np.log(-np.expm1(-(1.0 - x_min) / mean))


def log_displaced_ip_density(
    d0: np.ndarray,
    z0: np.ndarray,
    sigma_d0: np.ndarray,
    sigma_z0: np.ndarray,
    decay_length: float,
    sign_prob: float,
    z_ratio: float,
) -> np.ndarray:
    """Log density of (d0, z0) = (s*L, t*z_ratio*L) + Gaussian resolution, L ~ Exp(decay_length).

    Integrating L over (0, inf) gives, for each sign pair (s, t), with A = 1/s1^2 + c^2/s2^2 and
    B = s*d0/s1^2 + t*c*z0/s2^2 - 1/lambda:
    p = exp(B^2/2A - d0^2/2s1^2 - z0^2/2s2^2) * sqrt(2pi/A) * Phi(B/sqrt(A)) / (2pi s1 s2 lambda),
    summed with weights P(s) * 1/2.
    """
    d0 = np.asarray(d0, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    inv_var_d0 = 1.0 / np.square(np.asarray(sigma_d0, dtype=np.float64))
    inv_var_z0 = 1.0 / np.square(np.asarray(sigma_z0, dtype=np.float64))
    quad = inv_var_d0 + z_ratio**2 * inv_var_z0
    inv_root = 1.0 / np.sqrt(quad)
    d0_term = d0 * inv_var_d0
    z0_term = z0 * inv_var_z0
    base = -0.5 * (d0 * d0_term + z0 * z0_term)
    base += 0.5 * np.log(inv_var_d0 * inv_var_z0 / quad) - 0.5 * LOG_2PI - np.log(decay_length)
    d0_term *= inv_root
    z0_term *= z_ratio * inv_root
    offset = inv_root / decay_length
    terms = []
    for s, p_s in ((1.0, sign_prob), (-1.0, 1.0 - sign_prob)):
        if p_s <= 0.0:
            continue
        shifted = s * d0_term - offset
        for t in (1.0, -1.0):
            z = shifted + t * z0_term
            term = log_ndtr(z)
            term += 0.5 * z * z
            term += np.log(0.5 * p_s)
            terms.append(term)
    peak = terms[0].copy()
    for term in terms[1:]:
        np.maximum(peak, term, out=peak)
    total = np.zeros_like(peak)
    for term in terms:
        term -= peak
        total += np.exp(term)
    base += peak
    base += np.log(total)
    return base


def origin_log_densities(
    trk_pt: np.ndarray,
    trk_deta: np.ndarray,
    trk_dphi: np.ndarray,
    trk_d0: np.ndarray,
    trk_z0: np.ndarray,
    jet_pt: np.ndarray,
) -> np.ndarray:
    """Log density of each track under each origin, shape (n_tracks, n_origins); jet_pt per track."""
    table = origin_table()
    trk_pt = np.asarray(trk_pt, dtype=np.float64)
    jet_pt = np.asarray(jet_pt, dtype=np.float64)
    x = trk_pt / jet_pt
    x_min = MIN_TRACK_PT / jet_pt
    ang = angular_scale(jet_pt)
    out = np.empty((len(trk_pt), len(ORIGINS)), dtype=np.float64)
    for o in range(len(ORIGINS)):
        width = table.angular_width[o] * ang
        logp = log_pt_fraction_density(x, x_min, table.pt_fraction_mean[o])
        logp += log_normal_density(trk_deta, width) + log_normal_density(trk_dphi, width)
        d0_sd, z0_sd = ip_widths(o, trk_pt)
        if table.decay_length[o] > 0.0:
            logp += log_displaced_ip_density(
                trk_d0, trk_z0, d0_sd, z0_sd, table.decay_length[o], table.sign_prob[o], table.z_ratio[o]
            )
        else:
            logp += log_normal_density(trk_d0, d0_sd) + log_normal_density(trk_z0, z0_sd)
        out[:, o] = logp
    return out


def _mixture_log_likelihoods(log_origin: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """log(sum_o weights[f, o] * exp(log_origin[:, o])) for each flavour f, shape (n_tracks, n_flavours).

    Normalises by the per-track maximum and sums origin by origin (a fixed order without BLAS, so
    the result does not depend on threading). Rows where that underflows for some flavour (a track
    far likelier under an origin the flavour lacks) are redone with a per-flavour maximum.
    """
    peak = np.max(log_origin, axis=1, keepdims=True)
    relative = np.exp(log_origin - peak)
    scaled = np.zeros((len(log_origin), len(weights)), dtype=np.float64)
    for o in range(log_origin.shape[1]):
        scaled += relative[:, o, None] * weights[None, :, o]
    with np.errstate(divide="ignore"):
        out = np.log(scaled) + peak
    redo = np.flatnonzero(np.any(scaled < 1e-250, axis=1))
    if len(redo):
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
        out[redo] = _logsumexp(log_origin[redo, None, :] + log_weights[None, :, :], axis=-1)
    return out


def track_log_likelihoods(
    trk_pt: np.ndarray,
    trk_deta: np.ndarray,
    trk_dphi: np.ndarray,
    trk_d0: np.ndarray,
    trk_z0: np.ndarray,
    jet_pt: np.ndarray,
) -> np.ndarray:
    """Per-track log likelihood under each flavour (b, c, light), shape (n_tracks, 3); jet_pt per track."""
    log_origin = origin_log_densities(trk_pt, trk_deta, trk_dphi, trk_d0, trk_z0, jet_pt)
    return _mixture_log_likelihoods(log_origin, origin_table().origin_fractions)


def jet_log_likelihoods(
    jet_pt: np.ndarray,
    jet_ntracks: np.ndarray,
    trk_pt: np.ndarray,
    trk_deta: np.ndarray,
    trk_dphi: np.ndarray,
    trk_d0: np.ndarray,
    trk_z0: np.ndarray,
) -> np.ndarray:
    """Per-jet log likelihood of its tracks under each flavour (b, c, light), shape (n_jets, 3).

    Track arrays are flat and ordered by jet, ``jet_ntracks`` tracks per jet, as in the files.
    """
    jet_pt = np.asarray(jet_pt, dtype=np.float64)
    counts = np.asarray(jet_ntracks, dtype=np.int64)
    n_jets = len(jet_pt)
    if counts.sum() != len(trk_pt):
        raise ValueError("sum of jet_ntracks does not match the number of tracks")
    jet_of_track = np.repeat(np.arange(n_jets), counts)
    per_track = track_log_likelihoods(trk_pt, trk_deta, trk_dphi, trk_d0, trk_z0, jet_pt[jet_of_track])
    out = np.empty((n_jets, 3), dtype=np.float64)
    for f in range(3):
        mu = mean_n_tracks(np.full(n_jets, f), jet_pt)
        poisson = counts * np.log(mu) - mu - gammaln(counts + 1.0)
        out[:, f] = poisson + np.bincount(jet_of_track, weights=per_track[:, f], minlength=n_jets)
    return out


def jet_log_likelihood_ratios(
    jet_pt: np.ndarray,
    jet_ntracks: np.ndarray,
    trk_pt: np.ndarray,
    trk_deta: np.ndarray,
    trk_dphi: np.ndarray,
    trk_d0: np.ndarray,
    trk_z0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Bayes-optimal (llr_bl, llr_cl) = (log L_b - log L_light, log L_c - log L_light) per jet, float64."""
    logl = jet_log_likelihoods(jet_pt, jet_ntracks, trk_pt, trk_deta, trk_dphi, trk_d0, trk_z0)
    return logl[:, 0] - logl[:, 2], logl[:, 1] - logl[:, 2]


def event_log_likelihood_ratio(jet_counts: np.ndarray, jet_pt: np.ndarray, llr_bl: np.ndarray, llr_cl: np.ndarray,
                               signal: str = "zprime", background: str = "ttbar") -> np.ndarray:
    """Bayes-optimal log p(event | signal) - log p(event | background) of toy events, float64.

    An event is its jet multiplicity (2 + Poisson) and independent jets; a jet's density under a
    process is sum_f fraction_f * gamma_f(pt - PT_MIN) * L_f(tracks | pt), and dividing by
    L_light(tracks | pt), the same under both processes, leaves exp(llr_bl), exp(llr_cl) and 1 for
    b, c and light. Eta, phi and mass have the same densities under both processes and cancel.
    ``jet_counts`` are jets per event; the jet arrays run over every jet of every event.
    """
    from .processes import PT_MIN, get_process

    counts = np.asarray(jet_counts, dtype=np.int64)
    pt = np.asarray(jet_pt, dtype=np.float64)
    flavour_llr = np.stack([np.asarray(llr_bl, np.float64), np.asarray(llr_cl, np.float64), np.zeros(len(pt))], axis=1)

    def log_density(name: str) -> tuple[np.ndarray, np.ndarray]:
        process = get_process(name)
        k = process.pt_shape
        theta = (np.asarray(process.pt_mean) - PT_MIN) / k
        x = np.maximum(pt - PT_MIN, 1e-12)[:, None]
        log_gamma = (k - 1.0) * np.log(x) - x / theta[None, :] - gammaln(k) - k * np.log(theta)[None, :]
        jets = _logsumexp(np.log(np.asarray(process.flavour_fractions))[None, :] + log_gamma + flavour_llr, axis=1)
        lam = process.extra_jets_mean
        extra = counts - 2
        multiplicity = extra * np.log(lam) - lam - gammaln(extra + 1.0)
        return multiplicity, jets

    n_sig, jets_sig = log_density(signal)
    n_bkg, jets_bkg = log_density(background)
    event_of_jet = np.repeat(np.arange(len(counts)), counts)
    return n_sig - n_bkg + np.bincount(event_of_jet, weights=jets_sig - jets_bkg, minlength=len(counts))
