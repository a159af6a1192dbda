"""Exactness of the toy likelihood: closed forms, normalisation, agreement with the samplers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logsumexp

from tracerflow.seeding import rng_for
from tracerflow.toy import (
    ORIGIN_LABELS,
    ORIGINS,
    jet_log_likelihood_ratios,
    log_displaced_ip_density,
    log_pt_fraction_density,
    origin_log_densities,
    track_log_likelihoods,
)
from tracerflow.toy.detector import (
    draw_impact_parameters,
    draw_pt_fractions,
    draw_tracks,
    ip_widths,
    mean_n_tracks,
    origin_table,
)

DISPLACED = [i for i, o in enumerate(ORIGINS) if o.decay_length > 0]
TRK_PT = 0.5


def _ip_params(o: int) -> tuple[float, float, float, float, float]:
    d0_width, z0_width = ip_widths(o, np.array([TRK_PT]))
    origin = ORIGINS[o]
    return float(d0_width[0]), float(z0_width[0]), origin.decay_length, origin.sign_prob, origin.z_ratio


def test_parameters_are_consistent() -> None:
    assert [o.name for o in ORIGINS] == list(ORIGIN_LABELS)
    fractions = origin_table().origin_fractions
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(fractions[2, 3:6] == 0) and np.all(fractions[1, 3:5] == 0) and fractions[0, 5] == 0
    assert np.all(mean_n_tracks(np.array([0, 1, 2]), np.full(3, 60.0)) > 0)


def test_stored_llr_equals_recomputed(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    for data in mixed.values():
        llr_bl, llr_cl = jet_log_likelihood_ratios(
            data["jet_pt"], data["jet_ntracks"], data["trk_pt"], data["trk_deta"],
            data["trk_dphi"], data["trk_d0"], data["trk_z0"],
        )
        np.testing.assert_allclose(data["jet_llr_bl"], llr_bl, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(data["jet_llr_cl"], llr_cl, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mean", [0.03, 0.08, 0.15])
@pytest.mark.parametrize("jet_pt", [20.5, 45.0, 800.0])
def test_pt_fraction_density_is_normalised(mean: float, jet_pt: float) -> None:
    x_min = 0.5 / jet_pt
    total, _ = integrate.quad(lambda x: np.exp(log_pt_fraction_density(x, x_min, mean)), x_min, 1.0,
                              points=[x_min + mean], epsabs=0, epsrel=1e-11, limit=200)
    assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("o", DISPLACED, ids=[ORIGIN_LABELS[o] for o in DISPLACED])
def test_displaced_closed_form_matches_quadrature(o: int) -> None:
    s1, s2, lam, p, c = _ip_params(o)

    def brute(d0: float, z0: float) -> float:
        total = 0.0
        for s, ps in ((1, p), (-1, 1 - p)):
            for t in (1, -1):
                def f(length: float) -> float:
                    return (np.exp(-length / lam) / lam
                            * np.exp(-0.5 * ((d0 - s * length) / s1) ** 2) / (np.sqrt(2 * np.pi) * s1)
                            * np.exp(-0.5 * ((z0 - t * c * length) / s2) ** 2) / (np.sqrt(2 * np.pi) * s2))
                value, _ = integrate.quad(f, 0, 60 * lam + 10 * s1, points=[abs(d0), abs(z0) / c],
                                          epsabs=0, epsrel=1e-10, limit=400)
                total += 0.5 * ps * value
        return total

    for d0, z0 in [(0.0, 0.0), (0.1, 0.08), (-0.05, 0.02), (0.4, -0.3), (-0.3, -0.25), (1.5, 1.0)]:
        expected = np.log(brute(d0, z0))
        got = log_displaced_ip_density(np.array([d0]), np.array([z0]), s1, s2, lam, p, c)[0]
        assert got == pytest.approx(expected, abs=1e-7, rel=1e-9)


def _grid(o: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A grid covering the (d0, z0) density of origin ``o`` at TRK_PT, and its cell size."""
    s1, _, lam, _, c = _ip_params(o)
    step = s1 / 4
    reach = 15 * lam + 10 * s1
    d0 = np.arange(-reach, reach + step, step)
    z0 = np.arange(-(c * 15 * lam + 10 * s1) * 1.5, (c * 15 * lam + 10 * s1) * 1.5 + step, step)
    return d0, z0, step


@pytest.mark.parametrize("o", DISPLACED, ids=[ORIGIN_LABELS[o] for o in DISPLACED])
def test_displaced_density_integrates_to_one(o: int) -> None:
    s1, s2, lam, p, c = _ip_params(o)
    d0, z0, step = _grid(o)
    dd, zz = np.meshgrid(d0, z0, indexing="ij")
    density = np.exp(log_displaced_ip_density(dd, zz, s1, s2, lam, p, c))
    assert density.sum() * step * step == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("o", DISPLACED, ids=[ORIGIN_LABELS[o] for o in DISPLACED])
def test_impact_parameter_sampler_matches_density(o: int) -> None:
    s1, s2, lam, p, c = _ip_params(o)
    n = 400_000
    rng = rng_for(7, "test", "ip", o)
    d0_s, z0_s = draw_impact_parameters(rng, np.full(n, o), np.full(n, TRK_PT))
    fine = s1 / 10
    per_bin = 10
    d0_edges = np.arange(-2 * lam - 4 * s1, 4 * lam + 4 * s1, fine * per_bin)
    z0_edges = np.arange(-3 * c * lam - 4 * s2, 3 * c * lam + 4 * s2, fine * per_bin)
    observed, _, _ = np.histogram2d(d0_s, z0_s, bins=[d0_edges, z0_edges])
    d0_mid = d0_edges[0] + fine * (np.arange((len(d0_edges) - 1) * per_bin) + 0.5)
    z0_mid = z0_edges[0] + fine * (np.arange((len(z0_edges) - 1) * per_bin) + 0.5)
    dd, zz = np.meshgrid(d0_mid, z0_mid, indexing="ij")
    cell = np.exp(log_displaced_ip_density(dd, zz, s1, s2, lam, p, c)) * fine * fine
    expected = n * cell.reshape(len(d0_edges) - 1, per_bin, len(z0_edges) - 1, per_bin).sum(axis=(1, 3))
    used = expected > 20
    assert observed[used].sum() > 0.5 * n
    chi2 = np.sum((observed[used] - expected[used]) ** 2 / expected[used])
    ndf = used.sum()
    assert chi2 < ndf + 5 * np.sqrt(2 * ndf), (chi2, ndf)


@pytest.mark.parametrize("o", [0, 2, 3, 6], ids=[ORIGIN_LABELS[o] for o in (0, 2, 3, 6)])
def test_pt_fraction_sampler_matches_density(o: int) -> None:
    n, jet_pt = 300_000, 35.0
    x = draw_pt_fractions(rng_for(7, "test", "x", o), np.full(n, o), np.full(n, jet_pt))
    x_min, mean = 0.5 / jet_pt, ORIGINS[o].pt_fraction_mean
    assert x.min() >= x_min and x.max() <= 1.0
    edges = np.linspace(x_min, min(1.0, x_min + 8 * mean), 41)
    observed, _ = np.histogram(x, bins=edges)
    expected = np.array([
        n * integrate.quad(lambda v: np.exp(log_pt_fraction_density(v, x_min, mean)), a, b)[0]
        for a, b in zip(edges[:-1], edges[1:])
    ])
    used = expected > 20
    chi2 = np.sum((observed[used] - expected[used]) ** 2 / expected[used])
    assert chi2 < used.sum() + 5 * np.sqrt(2 * used.sum())


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / np.sqrt(len(values)))


@pytest.mark.parametrize("flavour", [0, 1, 2], ids=["b", "c", "light"])
def test_track_likelihood_ratios_are_calibrated(flavour: int) -> None:
    """For tracks drawn from flavour f and any normalised q, E_f[q / p_f] = 1.

    q runs over densities whose ratio to p_f is bounded (so the check has small variance): the
    uniform mixture of f's own origins and, for heavy flavours, the light-jet track density.
    """
    rng = rng_for(7, "test", "calibration", flavour)
    jet_pt = (20.0 + rng.gamma(1.5, 60.0, size=40_000)).astype(np.float32).astype(np.float64)
    n_tracks, tracks = draw_tracks(rng, np.full(len(jet_pt), flavour), jet_pt)
    args = (
        tracks["pt"], tracks["deta"], tracks["dphi"], tracks["d0"], tracks["z0"], np.repeat(jet_pt, n_tracks)
    )
    ll = track_log_likelihoods(*args)
    support = np.flatnonzero(origin_table().origin_fractions[flavour] > 0)
    uniform = logsumexp(origin_log_densities(*args)[:, support], axis=1) - np.log(len(support))
    alternatives = [uniform] + ([ll[:, 2]] if flavour != 2 else [])
    for log_q in alternatives:
        mean, error = _mean_and_error(np.exp(log_q - ll[:, flavour]))
        assert abs(mean - 1.0) < max(5 * error, 1e-3) and abs(mean - 1.0) < 0.02, (mean, error)


def test_jet_likelihood_ratios_are_calibrated(mixed: dict[str, dict[str, np.ndarray]]) -> None:
    """On the sample: E_b[L_light/L_b] = E_c[L_light/L_c] = E_b[L_c/L_b] = 1."""
    flavour = np.concatenate([d["jet_flavour"] for d in mixed.values()])
    bl = np.concatenate([d["jet_llr_bl"] for d in mixed.values()]).astype(np.float64)
    cl = np.concatenate([d["jet_llr_cl"] for d in mixed.values()]).astype(np.float64)
    for values in (np.exp(-bl[flavour == 5]), np.exp(-cl[flavour == 4]), np.exp(cl - bl)[flavour == 5]):
        mean, error = _mean_and_error(values)
        assert abs(mean - 1.0) < max(5 * error, 1e-3) and abs(mean - 1.0) < 0.05, (mean, error)


def test_mixture_matches_reference_and_survives_extreme_tracks() -> None:
    rng = rng_for(7, "test", "mixture")
    n = 2_000
    jet_pt = 20.0 + rng.gamma(1.5, 100.0, size=n)
    trk_pt = 0.5 + rng.exponential(5.0, size=n)
    deta, dphi = rng.normal(0, 0.1, size=(2, n))
    d0 = rng.choice([1.0, 0.1], size=n) * rng.standard_t(2, size=n)
    z0 = rng.choice([1.0, 0.1, 10.0], size=n) * rng.standard_t(2, size=n)
    d0[:3], z0[:3], trk_pt[:3] = [8.0, 0.6, -5.0], [6.4, 0.48, 40.0], [50.0, 90.0, 30.0]
    log_origin = origin_log_densities(trk_pt, deta, dphi, d0, z0, jet_pt)
    got = track_log_likelihoods(trk_pt, deta, dphi, d0, z0, jet_pt)
    fractions = origin_table().origin_fractions
    reference = np.stack([logsumexp(log_origin, b=fractions[f], axis=1) for f in range(3)], axis=1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-9)


def test_jets_without_tracks_only_see_the_multiplicity() -> None:
    jet_pt = np.array([25.0, 80.0, 400.0])
    llr_bl, llr_cl = jet_log_likelihood_ratios(jet_pt, np.zeros(3, dtype=int), *([np.zeros(0)] * 5))
    mu = [mean_n_tracks(np.full(3, f), jet_pt) for f in range(3)]
    np.testing.assert_allclose(llr_bl, mu[2] - mu[0], rtol=1e-12)
    np.testing.assert_allclose(llr_cl, mu[2] - mu[1], rtol=1e-12)
