"""Analyses other than toy b-tagging, run to Predict through configs alone: event classification of
the two real ntuples (two schemas, classes by sample, binary objective), a regression, a class absent
from a fold and a split, collision-like data scored by the fold ensemble, and physics weights."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
import yaml

from tracerflow.evaluate.predictions_file import read_predictions
from tracerflow.hashing import event_hashes

from .helpers import output_root, tracerflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "configs" / "examples"
FLAVOUR_WORDS = ("bjets", "cjets", "ujets", "b-jet", "c-jet", "light-jet", "b-tagging")


def example(name: str, shared_data: Path) -> dict:
    """A shipped example config with its sample files made absolute (so it runs from a tmp dir)."""
    config = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    for sample in config["samples"].values():
        sample["files"] = [str(shared_data / Path(f).name) for f in sample["files"]]
    config["project"]["output_dir"] = "out"
    return config


def write(tmp_path: Path, config: dict, name: str = "analysis.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(tmp_path: Path, config: dict, *args: str) -> Path:
    """Run ``config`` to its last stage in ``tmp_path``; its output root."""
    tracerflow("run", "--config", str(write(tmp_path, config)), *args, cwd=tmp_path, check=True)
    return tmp_path / "out" / config["project"]["name"]


def metrics(root: Path) -> dict:
    return json.loads((root / "predict" / "metrics.json").read_text())


@pytest.mark.slow
def test_hzz_vs_zmumu_by_sample_binary_to_predict_with_data_scored(tmp_path, shared_data):
    """Two schemas meet in one `muons` collection; classes come from the samples; the binary model
    scores P(hzz); a third sample without a class (data) is scored by the fold ensemble."""
    config = example("hzz_vs_zmumu", shared_data)
    config["train"]["epochs"] = 3
    data_template = {**config["samples"]["zmumu"]["event"]["template"], "leaves": {"run": "Run", "truth": "MC_truth"},
                     "optional": {"MC_truth": -1}}  # a truth branch collision data lacks
    config["samples"]["data"] = {**config["samples"]["zmumu"], "label": None,
                                 "event": {"template": data_template, "entry_list": list(range(300))}}
    config["predict"]["samples"] = ["data"]
    root = run(tmp_path, config)

    m = metrics(root)
    assert m["objective"] == "binary" and m["positive"] == "hzz" and m["row_level"] == "events"
    assert m["classes"] == ["zmumu", "hzz"]
    auc = m["out_of_fold"]["all"]["model"]["auc_zmumu_vs_hzz"]
    assert 0.55 < auc <= 1.0
    assert set(m["out_of_fold"]["per_fold"]) == {"0", "1", "2"}
    report = (root / "predict" / "report.html").read_text()
    assert not [w for w in FLAVOUR_WORDS if w in report]
    assert "hzz" in report and "zmumu" in report and "events" in report
    assert not re.search(r">\s*-?inf\s*<", report)

    with h5py.File(root / "predict" / "out_of_fold.h5") as f:
        assert f.attrs["positive"] == "hzz" and json.loads(f.attrs["class_names"]) == ["zmumu", "hzz"]
        pred = f["pred"][:]
        assert pred.shape[1] == 2 and ((pred >= 0) & (pred <= 1)).all()
        np.testing.assert_allclose(pred.sum(axis=1), 1.0, rtol=1e-6)
    with h5py.File(root / "train_sample" / "train.h5") as f:
        labels = f["jets/labels"][:]
        assert set(np.unique(labels)) == {0, 1}
    for name in ("out_of_fold.h5", "test.h5", "sample_data.h5"):  # every prediction joins back to its ROOT entry
        got = read_predictions(root / "predict" / name)
        for sample in np.unique(got["sample"]):
            mine = got["sample"] == sample
            files = np.unique(got["file"][mine])
            assert len(files) == 1 and files[0] in ("uproot-HZZ.root", "uproot-Zmumu.root")
            expected = event_hashes(str(sample), str(files[0]), "events", got["entry"][mine])
            np.testing.assert_array_equal(got["hash"][mine], expected)
        assert (got["item"] == 0).all()
    with h5py.File(root / "events" / "data" / "uproot-Zmumu.h5") as f:
        assert (f["event/truth"][:] == -1).all() and len(f["event/truth"]) == 300
    with h5py.File(root / "predict" / "sample_data.h5") as f:
        assert len(f["pred"]) == _selected_zmumu(shared_data, 300)
        assert (f["label"][:] == -1).all()
    assert sorted(p.name for p in (root / "predict" / "models").iterdir()) == [
        f"fold_{k}.torchscript.pt" for k in range(3)]


def _selected_zmumu(shared_data: Path, n: int) -> int:
    raw = uproot.open(shared_data / "uproot-Zmumu.root")["events"].arrays(["Q1", "Q2"], library="np", entry_stop=n)
    return int((raw["Q1"] * raw["Q2"] < 0).sum())


@pytest.mark.slow
def test_zmumu_regression_of_two_targets_resolves_both(tmp_path, shared_data):
    """The dimuon mass and the first muon's pt, both known functions of the four-vector inputs, learnt
    at once: each residual spread (IQR) is well below its target's, and the stored scaling gives
    predictions in the targets' units."""
    config = example("zmumu_mass_regression", shared_data)
    config["train"]["epochs"] = 40
    config["selection"]["template"]["outputs"]["pt1"] = "hypot(at(muons.px, 0), at(muons.py, 0))"
    config["write"]["targets"] = ["mass", "pt1"]
    root = run(tmp_path, config)
    m = metrics(root)
    assert m["objective"] == "regression"
    block = m["ensembles"]["test"]["model"]
    with h5py.File(root / "train_sample" / "test.h5") as f:
        assert json.loads(f.attrs["target_names"]) == ["mass", "pt1"]
        targets = f["jets/targets"][:]
        assert "tracks" not in f
    for j, (name, limit) in enumerate((("mass", 0.7), ("pt1", 0.25))):
        iqr = np.subtract(*np.percentile(targets[:, j], [75, 25]))
        assert block[f"resolution_{name}"] < limit * iqr, (name, block, iqr)
        assert abs(block[f"bias_{name}"]) < block[f"resolution_{name}"]
    assert block["resolution_mass"] < 0.2 * targets[:, 0].std()
    with h5py.File(root / "predict" / "test.h5") as f:
        np.testing.assert_allclose(f["target"][:], targets, rtol=1e-6)
        residual = f["pred"][:] - f["target"][:]
    assert np.median(residual[:, 0]) == pytest.approx(block["bias_mass"], abs=1e-3)
    with h5py.File(root / "train" / "fold_0" / "model.h5") as f:
        assert f.attrs["objective"] == "regression"
        shift, scale = json.loads(f.attrs["target_shift"]), json.loads(f.attrs["target_scale"])
    assert 50 < shift[0] < 110 and 5 < scale[0] < 60 and 10 < shift[1] < 100


@pytest.mark.slow
def test_a_class_absent_from_a_fold_and_a_split_gives_nulls_not_a_crash(tmp_path, shared_data):
    """A third class with one event sits in one split and one fold only: its metrics elsewhere are
    null with a reason naming it, the run completes and every prediction file is written."""
    config = example("hzz_vs_zmumu", shared_data)
    config["train"]["epochs"] = 2
    config["train"]["model"]["tail"] = {"objective": "multiclass"}
    del config["train"]["positive"]
    hzz = config["samples"]["hzz"]
    config["samples"]["rare"] = {**hzz, "label": "rare", "event": {**hzz["event"], "entry_list": [1]}}
    config["resample"] = {**config["resample"], "classes": ["zmumu", "hzz", "rare"], "method": "none"}
    proc = tracerflow("run", "--config", str(write(tmp_path, config)), cwd=tmp_path, check=True)
    root = tmp_path / "out" / config["project"]["name"]
    assert re.search(r"class 'rare' has no rows in (fold|split) ", proc.stderr + proc.stdout)

    m = metrics(root)
    blocks = {**{f"fold {k}": b for k, b in m["out_of_fold"]["per_fold"].items()},
              **{f"split {k}": b for k, b in m["ensembles"].items()}}
    missing = [name for name, b in blocks.items() if any("rare" in str(r) for r in b["null_reasons"].values())]
    assert missing, blocks
    for b in blocks.values():
        assert b["model"]["auc_zmumu_vs_hzz"] is not None
        nulls = [k for k, v in b["model"].items() if v is None]
        assert all("rare" in b["null_reasons"][f"model.{k}"] for k in nulls)
    for name in ("out_of_fold.h5", "test.h5", "report.html"):
        assert (root / "predict" / name).is_file()
    assert "n/a" in (root / "predict" / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["keep", "abs", "zero"])
def test_cross_section_weights_give_xsec_times_lumi_per_sample(tmp_path, shared_data, policy):
    """Rows weigh xsec * lumi * w / sum(w): summed over every split (no cut, method none) each sample
    yields xsec * lumi; negative generator weights follow the policy in sum and rows alike."""
    config = example("hzz_vs_zmumu", shared_data)
    config["project"]["luminosity"] = 2000.0
    xsec = {"hzz": 0.25, "zmumu": 3.0}
    for name, sample in config["samples"].items():
        sample["cross_section"] = xsec[name]
    config["samples"]["zmumu"]["event"]["generator_weight"] = "where(at(muons.charge, 0) > 0, 2.0, -1.0)"
    config["samples"]["zmumu"]["event"]["negative_weights"] = policy
    config["selection"]["template"]["cuts"] = {}
    config["resample"].update(method="none", variables={"n_muons": [[0, 100, 1]]})
    for block in ("write", "train", "predict"):
        config.pop(block, None)
    root = run(tmp_path, config, "--until", "Resample")

    yields = {name: 0.0 for name in xsec}
    weights = []
    for split in config["resample"]["splits"]:
        with h5py.File(root / "resample" / f"{split}.h5") as f:
            sources = json.loads(f.attrs["sources"])
            source, weight = f["index/source"][:], f["weight"][:].astype(np.float64)
            for i, (sample, _) in enumerate(sources):
                yields[sample] += weight[source == i].sum()
                if sample == "zmumu":
                    weights.append(weight[source == i])
    for name in xsec:
        assert yields[name] == pytest.approx(xsec[name] * 2000.0, rel=1e-5)
    weights = np.concatenate(weights)
    if policy == "keep":
        assert (weights < 0).any() and (weights > 0).any()
    elif policy == "abs":
        assert (weights > 0).all() and len(np.unique(np.round(weights, 4))) == 2
    else:
        assert (weights >= 0).all() and (weights == 0).any()


@pytest.mark.slow
def test_event_level_toy_by_name_from_any_directory(tmp_path):
    """configs/toy-events.yaml by name: events labelled by sample, weighted by cross section, a
    transformer over the jets; train classes balanced, the untouched test split keeps xsec * lumi."""
    small = ("--set", "samples.ttbar.generate.n_jets=6000", "--set", "samples.zprime.generate.n_jets=3000",
             "--set", "train.epochs=3")
    tracerflow("run", "--config", "toy-events", *small, cwd=tmp_path, check=True)
    root = output_root(tmp_path, "toy-events")
    m = metrics(root)
    assert m["objective"] == "binary" and m["positive"] == "zprime" and m["row_level"] == "events"
    assert m["classes"] == ["ttbar", "zprime"]
    assert m["out_of_fold"]["all"]["model"]["auc_ttbar_vs_zprime"] > 0.95
    sums = {}
    for split in ("train", "test"):
        with h5py.File(root / "train_sample" / f"{split}.h5") as f:
            labels, weights = f["events/labels"][:], f["events/weight"][:].astype(np.float64)
            sums[split] = [weights[labels == c].sum() for c in (0, 1)]
            assert f["jets/inputs"].shape[1:] == (12, 6) and "tracks" not in f
    assert sums["train"][0] == pytest.approx(sums["train"][1], rel=1e-5)
    assert sums["test"][0] / sums["test"][1] == pytest.approx(830 / 5, rel=0.25)
    # the exact event LLR is the configured reference, beside the model in every block, in the report
    assert m["reference"] == {"score": "llr_zprime", "name": "Bayes optimal", "positive": "zprime"}
    for block in (m["out_of_fold"]["all"], *m["out_of_fold"]["per_fold"].values(), m["ensembles"]["test"]):
        assert set(block["reference"]) == {"auc_ttbar_vs_zprime", "ttbar_rejection_50", "ttbar_rejection_80",
                                           "ttbar_rejection_90"}
        assert set(block["reference"]) <= set(block["model"])
    oof = m["out_of_fold"]["all"]
    assert 0.95 < oof["reference"]["auc_ttbar_vs_zprime"] <= 1.0
    # three epochs at a tenth of the shipped size; the benchmark checks the shipped run (ratio >= 0.995)
    assert oof["reference"]["auc_ttbar_vs_zprime"] - 0.03 < oof["model"]["auc_ttbar_vs_zprime"]
    assert "<th>Bayes optimal (out of fold)</th>" in (root / "predict" / "report.html").read_text()
