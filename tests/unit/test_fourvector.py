"""Four-vector conventions: kinematics against hand-computed values and round trips."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.templates.fourvector import CONVENTIONS, DEFAULT_ADDED, derive_kinematics

ALL = ("pt", "eta", "phi", "mass", "px", "py", "pz", "e")


def arrays(**kw):
    return {k: np.asarray(v, dtype=np.float64) for k, v in kw.items()}


def test_pxpypze_to_pt_eta_phi_mass():
    s1 = np.sinh(1.0)
    f = arrays(px=[3, 1, -1, 0, 3], py=[4, 0, 0, 2, 4], pz=[0, s1, 0, -2 * np.sinh(0.5), 0],
               e=[13, np.cosh(1.0), 2, np.sqrt(4 + 4 * np.sinh(0.5) ** 2 + 1), 4])
    out = derive_kinematics("pxpypze", f, ("pt", "eta", "phi", "mass"))
    np.testing.assert_allclose(out["pt"], [5, 1, 1, 2, 5])
    np.testing.assert_allclose(out["eta"], [0, 1, 0, -0.5, 0], atol=1e-12)
    np.testing.assert_allclose(out["phi"], [np.arctan2(4, 3), 0, np.pi, np.pi / 2, np.arctan2(4, 3)])
    # the last one is off-shell (E < |p|): mass is -sqrt(|m^2|), as in ROOT's TLorentzVector::M
    np.testing.assert_allclose(out["mass"], [12, 0, np.sqrt(3), 1, -3], atol=1e-7)


def test_pxpypzm_adds_energy():
    out = derive_kinematics("pxpypzm", arrays(px=[3.0], py=[4.0], pz=[12.0], mass=[0.0]), DEFAULT_ADDED["pxpypzm"])
    assert set(out) == {"pt", "eta", "phi", "e"}
    np.testing.assert_allclose(out["e"], [13.0])
    np.testing.assert_allclose(out["pt"], [5.0])
    np.testing.assert_allclose(out["eta"], [np.arcsinh(12 / 5)])


def test_ptetaphim_to_cartesian():
    f = arrays(pt=[10, 2], eta=[0.5, 0], phi=[-np.pi / 2, np.pi / 3], mass=[1, 0])
    out = derive_kinematics("ptetaphim", f, ("px", "py", "pz", "e"))
    np.testing.assert_allclose(out["px"], [0, 1], atol=1e-12)
    np.testing.assert_allclose(out["py"], [-10, np.sqrt(3)])
    np.testing.assert_allclose(out["pz"], [10 * np.sinh(0.5), 0], atol=1e-12)
    np.testing.assert_allclose(out["e"], [np.sqrt(100 * np.cosh(0.5) ** 2 + 1), 2])


def test_ptetaphie_mass():
    f = arrays(pt=[3.0], eta=[0.0], phi=[0.0], e=[5.0])
    out = derive_kinematics("ptetaphie", f, ("mass", "px", "pz"))
    np.testing.assert_allclose(out["mass"], [4.0])
    np.testing.assert_allclose(out["px"], [3.0])
    np.testing.assert_allclose(out["pz"], [0.0], atol=1e-15)


def test_zero_transverse_momentum_gives_infinite_eta():
    out = derive_kinematics("pxpypze", arrays(px=[0, 0], py=[0, 0], pz=[5, -5], e=[6, 6]), ("eta", "pt"))
    assert out["eta"].tolist() == [np.inf, -np.inf]
    assert out["pt"].tolist() == [0, 0]


@pytest.mark.parametrize("source", sorted(CONVENTIONS))
def test_round_trips_through_every_convention(source):
    rng = np.random.default_rng(1)
    n = 500
    truth = {"pt": rng.uniform(1, 200, n), "eta": rng.uniform(-4, 4, n), "phi": rng.uniform(-np.pi, np.pi, n),
             "mass": rng.uniform(0.1, 50, n)}
    full = derive_kinematics("ptetaphim", truth, ALL)
    inputs = {c: full[c] for c in CONVENTIONS[source]}
    back = derive_kinematics(source, inputs, ALL)
    for name in ALL:
        np.testing.assert_allclose(back[name], full[name], rtol=1e-6, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(back["pt"], truth["pt"], rtol=1e-9)
    np.testing.assert_allclose(back["eta"], truth["eta"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(back["phi"], truth["phi"], rtol=1e-9, atol=1e-9)


def test_output_dtype_follows_input_floats():
    f32 = {k: np.array([3.0, 1.0], np.float32) for k in ("px", "py", "pz")}
    f32["e"] = np.array([10.0, 5.0], np.float32)
    out = derive_kinematics("pxpypze", f32, ("pt", "mass"))
    assert out["pt"].dtype == np.float32 and out["mass"].dtype == np.float32
    ints = {k: np.array([3, 1], np.int32) for k in ("px", "py", "pz")}
    ints["e"] = np.array([10, 5], np.int32)
    out = derive_kinematics("pxpypze", ints, ("pt",))
    assert out["pt"].dtype == np.float32
    np.testing.assert_allclose(out["pt"], [np.hypot(3, 3), np.hypot(1, 1)], rtol=1e-6)
    f64 = arrays(px=[1.0], py=[1.0], pz=[1.0], e=[2.0])
    assert derive_kinematics("pxpypze", f64, ("pt",))["pt"].dtype == np.float64


def test_errors():
    with pytest.raises(ValueError, match="unknown four-vector convention 'xyzt'"):
        derive_kinematics("xyzt", {}, ("pt",))
    with pytest.raises(ValueError, match="cannot derive 'rapidity'"):
        derive_kinematics("pxpypze", arrays(px=[1], py=[1], pz=[1], e=[2]), ("rapidity",))
