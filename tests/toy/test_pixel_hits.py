"""Signal hits of the toy's tracks in the pixel detector (lib/toy/pixel_hits.py) and their
opt-in hit_* branches in the toy files (lib/toy/sample.py)."""
from __future__ import annotations

import hashlib
import sys
import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from tracerflow.seeding import rng_for
from tracerflow.toy import TREE_NAME, generate_file, generate_sample, plan_files
from tracerflow.toy.pixel_hits import (
    ETA_MAX, bent_phi, layer_radii, pixel_of, pixel_position, signal_hits, wrap_phi,
)
from tracerflow.toy.pixels import PixelGeometry, geometry

GEOMETRIES = [geometry("default"), geometry("belle2"), PixelGeometry(layers=(3, 4, 5), height=8, width=16)]
GEOMETRY_IDS = ["default", "belle2", "odd-layers"]
FLOAT32_SLACK = 1e-6  # positions are float32: ~3e-7 at |phi| = pi


def _pixel_size(geo: PixelGeometry, layer: int) -> tuple[float, float]:
    """(eta, phi) extent of one pixel on ``layer``."""
    n = geo.layers[layer]
    halves, ladders = (2, n // 2) if n % 2 == 0 else (1, n)
    return 2.0 * ETA_MAX / halves / geo.width, 2.0 * np.pi / ladders / geo.height


def _tracks(rng: np.random.Generator, n: int, eta_max: float = 2.45) -> dict[str, np.ndarray]:
    return {"eta": rng.uniform(-eta_max, eta_max, n), "phi": rng.uniform(-np.pi, np.pi, n),
            "pt": rng.uniform(0.5, 60.0, n), "charge": rng.choice([-1, 1], n)}


@pytest.mark.parametrize("geo", GEOMETRIES, ids=GEOMETRY_IDS)
def test_positions_round_trip(geo: PixelGeometry) -> None:
    rng = np.random.default_rng(1)
    eta, phi = rng.uniform(-ETA_MAX + 1e-6, ETA_MAX - 1e-6, 5_000), rng.uniform(-np.pi, np.pi, 5_000)
    eta[:4], phi[:4] = [0.0, -1e-9, 2.4999, -2.4999], [-np.pi, np.pi - 1e-12, 0.0, 3.0]
    layer_of = geo.layer_of()
    seen = set()
    for layer in range(len(geo.layers)):
        sensor, ucell, vcell, fu, fv = pixel_of(geo, layer, eta, phi)
        assert np.all(layer_of[sensor] == layer)
        assert np.all((ucell >= 0) & (ucell < geo.height) & (vcell >= 0) & (vcell < geo.width))
        assert np.array_equal(ucell, np.floor(fu).clip(0, geo.height - 1))
        pos = pixel_position(geo, sensor, ucell, vcell)
        assert pos["layer"].dtype == np.int16 and pos["eta"].dtype == pos["phi"].dtype == np.float32
        assert np.all(pos["layer"] == layer)
        deta, dphi = _pixel_size(geo, layer)
        assert np.all(np.abs(pos["eta"] - eta) <= deta / 2 + FLOAT32_SLACK)
        assert np.all(np.abs(wrap_phi(pos["phi"].astype(np.float64) - phi)) <= dphi / 2 + FLOAT32_SLACK)
        assert np.all(np.sign(pos["eta"]) == np.where(eta >= 0, 1, -1)) or geo.layers[layer] % 2 == 1
        seen.update(sensor.tolist())
    assert seen == set(range(geo.n_sensors))
    # every pixel's centre lies in that very pixel
    sensor = np.repeat(np.arange(geo.n_sensors), 4)
    u, v = rng.integers(0, geo.height, len(sensor)), rng.integers(0, geo.width, len(sensor))
    pos = pixel_position(geo, sensor, u, v)
    for layer in range(len(geo.layers)):
        on = pos["layer"] == layer
        back = pixel_of(geo, layer, pos["eta"][on].astype(np.float64), pos["phi"][on].astype(np.float64))
        assert np.array_equal(back[0], sensor[on]) and np.array_equal(back[1], u[on]) and np.array_equal(back[2], v[on])


@pytest.mark.parametrize("geo", GEOMETRIES[:2], ids=GEOMETRY_IDS[:2])
def test_isolated_tracks_leave_small_clusters_where_they_cross(geo: PixelGeometry) -> None:
    n = 3_000
    tracks = _tracks(np.random.default_rng(2), n)
    tracks["eta"][-300:] = np.random.default_rng(3).choice([-1, 1], 300) * np.random.default_rng(4).uniform(
        ETA_MAX, 4.0, 300)  # outside the acceptance: no hits
    digits = signal_hits(geo, np.random.default_rng(5), tracks["eta"], tracks["phi"], tracks["pt"], tracks["charge"],
                         np.arange(n), n)
    assert {k: v.dtype for k, v in digits.items()} == {
        "event": np.int32, "sensor": np.int16, "ucell": np.int16, "vcell": np.int16, "charge": np.uint8}
    assert digits["charge"].min() >= 7
    assert not np.any(np.isin(digits["event"], np.arange(n - 300, n)))
    layer = geo.layer_of()[digits["sensor"]]
    counts = np.zeros((n - 300, len(geo.layers)), dtype=np.int64)
    np.add.at(counts, (digits["event"], layer), 1)
    assert counts.max() <= 4
    assert (counts == 0).mean() < 1e-3  # only a low-charge crossing at a pixel corner can vanish
    assert (counts >= 2).mean() > 0.2  # charge sharing makes multi-pixel clusters
    for lay, radius in enumerate(layer_radii(geo)):
        sensor, ucell, vcell, _, _ = pixel_of(geo, lay, tracks["eta"], bent_phi(
            tracks["phi"], tracks["pt"], tracks["charge"], float(radius)))
        on = layer == lay
        ev = digits["event"][on]
        # every digit lies in the 2 x 2 block around the crossed pixel, on the crossed sensor
        assert np.array_equal(digits["sensor"][on], sensor[ev])
        assert np.all(np.abs(digits["ucell"][on] - ucell[ev]) <= 1)
        assert np.all(np.abs(digits["vcell"][on] - vcell[ev]) <= 1)
        crossed = (digits["ucell"][on] == ucell[ev]) & (digits["vcell"][on] == vcell[ev])
        assert crossed.sum() >= 0.999 * (n - 300)
        # the crossed pixel's centre is within half a pixel of where the track passes
        pos = pixel_position(geo, digits["sensor"][on][crossed], digits["ucell"][on][crossed],
                             digits["vcell"][on][crossed])
        deta, dphi = _pixel_size(geo, lay)
        hit = ev[crossed]
        assert np.all(np.abs(pos["eta"] - tracks["eta"][hit]) <= deta / 2 + FLOAT32_SLACK)
        phi_l = bent_phi(tracks["phi"][hit], tracks["pt"][hit], tracks["charge"][hit], float(radius))
        assert np.all(np.abs(wrap_phi(pos["phi"] - phi_l)) <= dphi / 2 + FLOAT32_SLACK)


@pytest.mark.parametrize("geo", GEOMETRIES[:2], ids=GEOMETRY_IDS[:2])
def test_digits_sorted_unique_and_summed(geo: PixelGeometry) -> None:
    rng = np.random.default_rng(6)
    n_events, n = 20, 2_000
    tracks = _tracks(rng, n)
    deta, dphi = _pixel_size(geo, 0)
    tracks["eta"] = rng.normal(0.3, 2 * deta, n)  # dense jets: many tracks share pixels
    tracks["phi"] = rng.normal(1.0, 2 * dphi, n)
    event = np.sort(rng.integers(0, n_events, n))
    digits = signal_hits(geo, np.random.default_rng(7), tracks["eta"], tracks["phi"], tracks["pt"], tracks["charge"],
                         event, n_events)
    key = np.stack([digits[k].astype(np.int64) for k in ("event", "sensor", "ucell", "vcell")])
    flat = ((key[0] * geo.n_sensors + key[1]) * geo.height + key[2]) * geo.width + key[3]
    assert np.all(np.diff(flat) > 0)  # sorted by event, sensor, ucell, vcell, one digit per pixel
    assert digits["charge"].min() >= 7 and digits["charge"].max() == 255  # pile-up sums saturate
    # tracks outside the acceptance only: no digits, typed
    none = signal_hits(geo, np.random.default_rng(9), [3.0], [0.0], [1.0], [1], [0], 1)
    assert all(len(v) == 0 for v in none.values()) and none["charge"].dtype == np.uint8


def test_two_tracks_in_one_pixel_add_up() -> None:
    geo = geometry("default")
    n = 500
    centre = pixel_position(geo, np.full(n, 1), np.full(n, 10), np.full(n, 40))  # layer 0: no charge sharing
    eta, phi = centre["eta"].astype(np.float64), centre["phi"].astype(np.float64)
    pt, charge = np.full(n, 1e4), np.ones(n)
    single = signal_hits(geo, np.random.default_rng(10), eta, phi, pt, charge, np.arange(n), n)
    double = signal_hits(geo, np.random.default_rng(11), np.tile(eta, 2), np.tile(phi, 2), np.tile(pt, 2),
                         np.tile(charge, 2), np.tile(np.arange(n), 2), n)
    means = []
    for digits in (single, double):
        on = digits["sensor"] == 1
        assert np.array_equal(digits["event"][on], np.arange(n))  # one digit per event: the crossed pixel
        assert np.all((digits["ucell"][on] == 10) & (digits["vcell"][on] == 40))
        means.append(digits["charge"][on].astype(np.float64).mean())
    assert 1.8 < means[1] / means[0] < 2.2
    with pytest.raises(ValueError):
        signal_hits(geo, np.random.default_rng(0), [0.0], [0.0], [1.0], [1], [1], 1)


# -- the hit branches of the toy files ------------------------------------------------------------

N_JETS, EVENTS_PER_FILE, SEED = 2_000, 300, 7
HIT_BRANCHES = {"hit_sensor": "int16", "hit_ucell": "int16", "hit_vcell": "int16", "hit_charge": "uint8",
                "hit_is_background": "int8"}

#: sha256 of generate_sample("ttbar", 2000, 300, 7, "bytes", ...) written by the code before the
#: hit branches existed, and the versions it was recorded with (bytes depend on uproot and zlib).
RECORDED_SHA256 = {
    "bytes_0000.root": "015add5bccd2e7d57160464dd14bd39626bf2a00c2c79328e99354be1dd89ccc",
    "bytes_0001.root": "b5f23935db5836c36a086d7627ee75d811f7f5556ef3560cffa8ec2f25e124a5",
}
RECORDED_VERSIONS = {"uproot": "5.7.7", "awkward": "2.14.0", "numpy": "2.4.6", "zlib": "1.2.13"}


@pytest.fixture(scope="module")
def hit_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "hits", tmp_path_factory.mktemp("hits"),
                           pixel_hits="default")


def _read(path: Path) -> ak.Array:
    with uproot.open(path) as root_file:
        tree = root_file[TREE_NAME]
        dtypes = {name: str(tree[name].interpretation.content.from_dtype.newbyteorder("="))
                  for name in HIT_BRANCHES}
        assert dtypes == HIT_BRANCHES
        return tree.arrays(library="ak")


def test_file_has_hit_branches_matching_the_tracks(hit_files: list[Path], tmp_path: Path) -> None:
    plain = generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "hits", tmp_path)
    geo = geometry("default")
    for index, (path, plain_path) in enumerate(zip(hit_files, plain)):
        events = _read(path)
        with uproot.open(plain_path) as root_file:
            without = root_file[TREE_NAME].arrays(library="ak")
        assert set(events.fields) - set(without.fields) == {"n_hits", *HIT_BRANCHES}
        for name in without.fields:  # the hits add branches, they change none
            assert ak.all(ak.ravel(events[name] == without[name])), name
        assert np.array_equal(ak.to_numpy(events["n_hits"]), ak.to_numpy(ak.num(events["hit_charge"])))
        assert ak.sum(events["hit_is_background"] != 0) == 0
        assert ak.min(events["hit_charge"]) >= 7 and ak.mean(events["n_hits"]) > 10
        # recomputed from the float32 track values written, the hits are the same
        n_trk = ak.num(events["trk_pt"])
        eta = ak.to_numpy(ak.flatten(events["jet_eta"][events["trk_jet_index"]])).astype(np.float64)
        phi = ak.to_numpy(ak.flatten(events["jet_phi"][events["trk_jet_index"]])).astype(np.float64)
        eta = eta + ak.to_numpy(ak.flatten(events["trk_deta"])).astype(np.float64)
        phi = wrap_phi(phi + ak.to_numpy(ak.flatten(events["trk_dphi"])).astype(np.float64))
        event = np.repeat(np.arange(len(events)), ak.to_numpy(n_trk))
        digits = signal_hits(geo, rng_for(SEED, "toy", "hits", "file", index, "block", 0, "pixel_hits"), eta, phi,
                             ak.to_numpy(ak.flatten(events["trk_pt"])), ak.to_numpy(ak.flatten(events["trk_charge"])),
                             event, len(events))
        for key, branch in (("sensor", "hit_sensor"), ("ucell", "hit_ucell"), ("vcell", "hit_vcell"),
                            ("charge", "hit_charge")):
            assert np.array_equal(digits[key], ak.to_numpy(ak.flatten(events[branch]))), branch


def test_hit_files_reproducible_byte_for_byte(hit_files: list[Path], tmp_path: Path) -> None:
    again = generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "hits", tmp_path / "again", pixel_hits="default")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in hit_files]
    plan = plan_files("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "hits")[1]
    alone = generate_file("ttbar", plan, SEED, "hits", tmp_path / "alone", pixel_hits="default")
    assert alone.read_bytes() == hit_files[1].read_bytes()
    belle2 = generate_file("ttbar", plan, SEED, "hits", tmp_path / "belle2", pixel_hits="belle2")
    assert belle2.read_bytes() != alone.read_bytes()
    with pytest.raises(ValueError, match="no pixel geometry"):
        generate_file("ttbar", plan, SEED, "hits", tmp_path / "bad", pixel_hits="nope")


def test_hits_of_several_blocks_and_chunks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tracerflow.toy import sample as sample_module

    monkeypatch.setattr(sample_module, "EVENTS_PER_BLOCK", 100)
    plan = plan_files("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "blocks")[0]
    assert plan.n_events > 200
    coarse = _read(generate_file("ttbar", plan, SEED, "blocks", tmp_path / "coarse", pixel_hits="default"))
    fine = _read(generate_file("ttbar", plan, SEED, "blocks", tmp_path / "fine", chunk_events=100,
                               pixel_hits="default"))
    assert coarse.fields == fine.fields
    for name in coarse.fields:
        assert ak.all(ak.ravel(coarse[name] == fine[name])), name
    assert np.array_equal(ak.to_numpy(coarse["n_hits"]), ak.to_numpy(ak.num(coarse["hit_sensor"])))
    # each block's hits are its own: block 1 alone gives the same hits as in the file
    events = coarse[100:200]
    eta = (ak.to_numpy(ak.flatten(events["jet_eta"][events["trk_jet_index"]])).astype(np.float64)
           + ak.to_numpy(ak.flatten(events["trk_deta"])).astype(np.float64))
    phi = wrap_phi(ak.to_numpy(ak.flatten(events["jet_phi"][events["trk_jet_index"]])).astype(np.float64)
                   + ak.to_numpy(ak.flatten(events["trk_dphi"])).astype(np.float64))
    digits = signal_hits("default", rng_for(SEED, "toy", "blocks", "file", 0, "block", 1, "pixel_hits"), eta, phi,
                         ak.to_numpy(ak.flatten(events["trk_pt"])), ak.to_numpy(ak.flatten(events["trk_charge"])),
                         np.repeat(np.arange(100), ak.to_numpy(ak.num(events["trk_pt"]))), 100)
    assert np.array_equal(digits["charge"], ak.to_numpy(ak.flatten(events["hit_charge"])))
    assert np.array_equal(np.bincount(digits["event"], minlength=100), ak.to_numpy(events["n_hits"]))


def test_without_pixel_hits_files_keep_their_bytes(tmp_path: Path) -> None:
    default = generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "bytes", tmp_path / "default")
    none = generate_sample("ttbar", N_JETS, EVENTS_PER_FILE, SEED, "bytes", tmp_path / "none", pixel_hits=None)
    assert [p.read_bytes() for p in none] == [p.read_bytes() for p in default]
    versions = {"uproot": uproot.__version__, "awkward": ak.__version__, "numpy": np.__version__,
                "zlib": zlib.ZLIB_RUNTIME_VERSION}
    if versions != RECORDED_VERSIONS:
        pytest.skip(f"recorded with {RECORDED_VERSIONS}, running {versions} ({sys.version.split()[0]}): "
                    "byte hashes are only comparable with the same writer")
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in none} == RECORDED_SHA256
