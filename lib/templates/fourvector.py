"""Four-vector conventions of ntuple branches and the kinematics derived from them."""
from __future__ import annotations

import numpy as np

CONVENTIONS = {
    "pxpypze": ("px", "py", "pz", "e"),
    "pxpypzm": ("px", "py", "pz", "mass"),
    "ptetaphim": ("pt", "eta", "phi", "mass"),
    "ptetaphie": ("pt", "eta", "phi", "e"),
}
KINEMATICS = ("pt", "eta", "phi", "mass", "px", "py", "pz", "e")
DEFAULT_ADDED = {
    "pxpypze": ("pt", "eta", "phi", "mass"),
    "pxpypzm": ("pt", "eta", "phi", "e"),
    "ptetaphim": (),
    "ptetaphie": (),
}


def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Fold an azimuth difference into [-pi, pi], keeping its dtype.

    Subtracting the nearest multiple of 2 pi is a few times faster than a float modulo,
    which matters in the kNN topology where it runs over every node pair.
    """
    dphi = np.asarray(dphi)
    two_pi = np.asarray(2 * np.pi, dtype=dphi.dtype) if dphi.dtype.kind == "f" else 2 * np.pi
    return dphi - two_pi * np.round(dphi / two_pi)


def _mass_and_energy(comps: dict[str, np.ndarray], p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mass (signed sqrt of m^2, as ROOT's TLorentzVector) and energy from whichever is given."""
    if "e" in comps:
        e = comps["e"]
        m2 = e * e - p2
        return np.sign(m2) * np.sqrt(np.abs(m2)), e
    mass = comps["mass"]
    return mass, np.sqrt(p2 + mass * mass)


def derive_kinematics(convention: str, fields: dict[str, np.ndarray], wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Compute ``wanted`` kinematics from the four components of ``convention`` in ``fields``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown four-vector convention {convention!r}; expected one of {sorted(CONVENTIONS)}")
    comps = {name: np.asarray(fields[name], dtype=np.float64) for name in CONVENTIONS[convention]}
    if "px" in comps:
        px, py, pz = comps["px"], comps["py"], comps["pz"]
        pt = np.hypot(px, py)
        mass, e = _mass_and_energy(comps, px * px + py * py + pz * pz)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(np.where(pt > 0, pz / pt, np.sign(pz) * np.inf))
        phi = np.arctan2(py, px)
    else:
        pt, eta, phi = comps["pt"], comps["eta"], comps["phi"]
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        mass, e = _mass_and_energy(comps, px * px + py * py + pz * pz)
    values = {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "px": px, "py": py, "pz": pz, "e": e}
    out = {}
    for name in wanted:
        if name not in values:
            raise ValueError(f"cannot derive {name!r}; kinematics are {KINEMATICS}")
        dtype = np.result_type(*(fields[c].dtype for c in CONVENTIONS[convention]))
        out[name] = values[name].astype(dtype if dtype.kind == "f" else np.float32)
    return out
