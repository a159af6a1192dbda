"""Synthetic jets for the resampling tests, and checks that they have the shape the tests rely on.

Three flavour classes with clearly different spectra: pt = 20 GeV + an exponential whose slope
depends on the class, and abs_eta = 2.5 * Beta(1, b) with a class-dependent b (b-jets most
central), plus 2% of jets with a label outside the classes and a tail beyond the last pt
edge. Events hold 1 to 3 jets; the jets are spread over four "selections files" (source).
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from tracerflow.resample import ResampleSpec

N_JETS = 200_000
N_SOURCES = 4
CLASSES = {"bjets": 5, "cjets": 4, "ujets": 0}
LABEL_P = {5: 0.30, 4: 0.20, 0: 0.48, 15: 0.02}
PT_SCALE = {5: 50.0, 4: 40.0, 0: 30.0, 15: 30.0}
ETA_BETA = {5: 1.6, 4: 1.3, 0: 1.0, 15: 1.0}
PT_RANGES = [[20, 100, 8], [100, 150, 5]]
ETA_RANGES = [[0, 2.5, 4]]


def make_jets(n_jets: int = N_JETS, seed: int = 1) -> dict[str, np.ndarray]:
    """Columns of ``n_jets`` synthetic jets, plus ``gid`` (the jet's position in the whole set)."""
    rng = np.random.default_rng(seed)
    per_event = rng.integers(1, 4, n_jets)
    per_event = per_event[: np.searchsorted(np.cumsum(per_event), n_jets) + 1]
    per_event[-1] -= per_event.sum() - n_jets
    event_hash = rng.integers(0, 2**64, len(per_event), dtype=np.uint64)
    starts = np.cumsum(per_event) - per_event
    labels = rng.choice(list(LABEL_P), n_jets, p=list(LABEL_P.values()))
    scale = np.vectorize(PT_SCALE.get)(labels).astype(np.float64)
    beta = np.vectorize(ETA_BETA.get)(labels).astype(np.float64)
    source = np.arange(n_jets) * N_SOURCES // n_jets
    first_of_source = np.searchsorted(source, np.arange(N_SOURCES))
    return {
        "pt": (20.0 + rng.exponential(scale)).astype(np.float32),
        "abs_eta": 2.5 * rng.beta(1.0, beta),
        "flavour": labels.astype(np.int32),
        "hash": np.repeat(event_hash, per_event),
        "item": (np.arange(n_jets) - np.repeat(starts, per_event)).astype(np.int32),
        "source": source.astype(np.uint16),
        "row": (np.arange(n_jets) - first_of_source[source]).astype(np.int64),
        "gid": np.arange(n_jets),
    }


def chunked(jets: dict[str, np.ndarray], size: int, reverse: bool = False) -> Callable[[], Iterator[dict]]:
    """A ``chunks()`` callable yielding ``jets`` in blocks of ``size`` rows (optionally last block first)."""
    n = len(jets["pt"])
    starts = list(range(0, n, size))
    if reverse:
        starts.reverse()

    def chunks() -> Iterator[dict]:
        for start in starts:
            yield {k: v[start:start + size] for k, v in jets.items() if k != "gid"}

    return chunks


def make_spec(**overrides) -> ResampleSpec:
    """The spec the tests start from: pt x abs_eta, b-jets as target, fraction 1."""
    fields = dict(
        variables={"pt": PT_RANGES, "abs_eta": ETA_RANGES},
        label="flavour",
        classes=CLASSES,
        target="bjets",
        seed=7,
        method="pdf",
        sampling_fraction=1.0,
        max_upsampling_ratio=20.0,
        splits={"train": 0.8, "val": 0.1, "test": 0.1},
    )
    fields.update(overrides)
    return ResampleSpec(**fields)


def global_id(jets: dict[str, np.ndarray], source: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Position in ``jets`` of output rows given by (source, row)."""
    first = np.searchsorted(jets["source"], np.arange(N_SOURCES))
    return first[source] + row


def test_synthetic_jets_have_the_advertised_shape():
    jets = make_jets()
    assert len(jets["pt"]) == N_JETS
    assert np.array_equal(global_id(jets, jets["source"].astype(np.int64), jets["row"]), jets["gid"])
    means = {lab: float(jets["pt"][jets["flavour"] == lab].mean()) for lab in (5, 4, 0)}
    assert means[5] > means[4] + 5 > means[0] + 10
    one_event = jets["hash"] == jets["hash"][0]
    assert np.array_equal(jets["item"][one_event], np.arange(one_event.sum()))
