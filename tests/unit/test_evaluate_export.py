"""Model export: TorchScript and ONNX files that load without tracerflow and give the model's outputs."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from tracerflow.config import ConfigError, load_config
from tracerflow.evaluate.export import canonical_torchscript, export_models, onnx_missing
from tracerflow.models import ModelBuilder

N_JET_VARS, N_TRACK_VARS = 2, 5
SIZES = {"n_jet_vars": N_JET_VARS, "n_track_vars": N_TRACK_VARS}
MODEL = {"body": {"widths": [16], "activation": "relu"}, "tail": {"objective": "multiclass", "n_out": 3},
         "set": {"type": "deepsets", "phi_widths": [8, 8], "rho_widths": [8]}}

SET_ENCODERS = {
    0: MODEL["set"],
    1: {"type": "transformer", "d_model": 8, "n_heads": 2, "n_layers": 1, "dim_feedforward": 16},
    2: {"type": "gnn", "edge_columns": [0, 1], "hidden": 8, "n_layers": 1},
}
"""Fold -> set encoder of the models exported in separate processes (fold k built with seed k)."""
EXPORT_SCRIPT = """
import json, sys
from tracerflow.evaluate.export import export_models
from tracerflow.models import ModelBuilder
model, sets, sizes, formats, out = json.loads(sys.argv[1])
models = {int(k): ModelBuilder({**model, "set": s}, **sizes).build(seed=int(k)).eval() for k, s in sets.items()}
for fmt, folds in formats.items():
    export_models({k: models[k] for k in folds}, out, [fmt], **sizes)
"""

needs_onnx = pytest.mark.skipif(bool(onnx_missing()), reason="the onnx extra (onnx, onnxscript) is not installed")


def deepsets(seed: int) -> torch.nn.Module:
    return ModelBuilder(MODEL, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=seed).eval()


def fold_model(fold: int) -> torch.nn.Module:
    """The model of ``fold`` in :data:`SET_ENCODERS`, as the export script builds it."""
    config = {**MODEL, "set": SET_ENCODERS[fold]}
    return ModelBuilder(config, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=fold).eval()


def formats() -> dict[str, list[int]]:
    """What the determinism tests export: every fold as TorchScript, the ONNX-able ones as ONNX when it is installed."""
    return {"torchscript": sorted(SET_ENCODERS), **({} if onnx_missing() else {"onnx": [0]})}


def export_in_processes(out_dirs: dict[str, os.PathLike]) -> None:
    """Export the :data:`SET_ENCODERS` models into each ``out_dirs[seed]`` from a Python process of its own,
    started with that string hash seed; the processes run side by side."""
    spec = [MODEL, SET_ENCODERS, SIZES, formats()]
    procs = [subprocess.Popen([sys.executable, "-c", EXPORT_SCRIPT, json.dumps([*spec, str(out)])],
                              env={**os.environ, "PYTHONHASHSEED": seed}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for seed, out in out_dirs.items()]
    for proc in procs:
        output, _ = proc.communicate()
        assert proc.returncode == 0, output


def batch(n: int, slots: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jets, padded tracks and the valid mask; the first jet has no track at all."""
    gen = torch.Generator().manual_seed(seed)
    valid = torch.rand(n, slots, generator=gen) > 0.4
    valid[0] = False
    return torch.randn(n, N_JET_VARS, generator=gen), torch.randn(n, slots, N_TRACK_VARS, generator=gen), valid


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="'savedmodel'"):
        export_models({0: deepsets(0)}, tmp_path, ["savedmodel"], **SIZES)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_gives_the_model_outputs(tmp_path):
    model = deepsets(0)
    [path] = export_models({3: model}, tmp_path, ["torchscript"], **SIZES)
    assert path.name == "fold_3.torchscript.pt"
    inputs = batch(6, 9)
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(path))(*inputs).numpy(), model(*inputs).numpy(), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_exports_of_one_model_have_the_same_bytes_in_every_process(tmp_path):
    export_in_processes({"1": tmp_path / "one", "2": tmp_path / "two"})
    wanted = formats()
    for fmt, folds in wanted.items():
        export_models({k: fold_model(k) for k in folds}, tmp_path / "here", [fmt], **SIZES)
    names = sorted(p.name for p in (tmp_path / "here").iterdir())
    suffix = {"torchscript": "torchscript.pt", "onnx": "onnx"}
    assert names == sorted(f"fold_{k}.{suffix[fmt]}" for fmt, folds in wanted.items() for k in folds)
    for name in names:
        here = (tmp_path / "here" / name).read_bytes()
        assert (tmp_path / "one" / name).read_bytes() == here, name
        assert (tmp_path / "two" / name).read_bytes() == here, name
    inputs = batch(7, 11)
    for fold in wanted["torchscript"]:
        loaded = torch.jit.load(str(tmp_path / "one" / f"fold_{fold}.torchscript.pt"))
        with torch.no_grad():
            np.testing.assert_allclose(loaded(*inputs).numpy(), fold_model(fold)(*inputs).numpy(), rtol=1e-5, atol=1e-6)
    if "onnx" in wanted and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        for fold in wanted["onnx"]:
            session = ort.InferenceSession(str(tmp_path / "two" / f"fold_{fold}.onnx"), providers=["CPUExecutionProvider"])
            jets, tracks, valid = inputs
            [logits] = session.run(None, {"jets": jets.numpy(), "tracks": tracks.numpy(), "valid": valid.numpy()})
            with torch.no_grad():
                np.testing.assert_allclose(logits, fold_model(fold)(*inputs).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_canonical_torchscript_sorts_constants_and_records_and_keeps_the_module(tmp_path):
    model = deepsets(4)
    scripted = torch.jit.script(model)
    raw = tmp_path / "raw.pt"
    scripted.save(str(raw))
    canonical = canonical_torchscript(raw.read_bytes())
    assert canonical_torchscript(canonical) == canonical
    with zipfile.ZipFile(raw) as before, zipfile.ZipFile(io.BytesIO(canonical)) as after:
        old = {i.filename.split("/", 1)[1]: before.read(i) for i in before.infolist()}
        new = {i.filename.split("/", 1)[1]: after.read(i) for i in after.infolist()}
        prefixes = {i.filename.split("/", 1)[0] for i in after.infolist()}
        written = [i.filename.split("/", 1)[1] for i in after.infolist()]
    assert prefixes == {"archive"}
    assert new.keys() == old.keys()
    records = [n for n in written if n not in ("version", "byteorder", ".data/serialization_id")]
    assert records == sorted(records) and len(records) == len(written) - 3
    linear = new["code/__torch__/torch/nn/modules/linear.py"].decode()
    assert linear.index("in_features : Final[int]") < linear.index("out_features : Final[int]")
    assert sorted(linear.splitlines()) == sorted(old["code/__torch__/torch/nn/modules/linear.py"].decode().splitlines())
    assert all(new[n] == old[n] for n in new if not n.endswith(".py") and n != ".data/serialization_id")
    inputs = batch(5, 8)
    with torch.no_grad():
        np.testing.assert_array_equal(torch.jit.load(io.BytesIO(canonical))(*inputs).numpy(), model(*inputs).numpy())


@needs_onnx
def test_onnx_export_is_a_valid_graph_with_dynamic_batch_and_track_axes(tmp_path):
    import onnx

    paths = export_models({0: deepsets(0), 1: deepsets(1)}, tmp_path, ["onnx"], **SIZES)
    assert [p.name for p in paths] == ["fold_0.onnx", "fold_1.onnx"]
    graph = onnx.load(str(paths[0]))
    onnx.checker.check_model(graph, full_check=True)
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert shapes == {"jets": ["batch", N_JET_VARS], "tracks": ["batch", "track", N_TRACK_VARS],
                      "valid": ["batch", "track"]}
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert not list(tmp_path.glob(".*"))


@needs_onnx
def test_onnx_runtime_gives_the_torch_outputs_at_other_shapes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = deepsets(2)
    [path] = export_models({0: model}, tmp_path, ["onnx"], **SIZES)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, slots in ((1, 3), (33, 40)):
        jets, tracks, valid = batch(n, slots, seed=n)
        [logits] = session.run(None, {"jets": jets.numpy(), "tracks": tracks.numpy(), "valid": valid.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(logits, model(jets, tracks, valid).numpy(), rtol=1e-5, atol=1e-5)


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("tracerflow.evaluate.export.onnx_missing", lambda: ["onnxscript"])
    with pytest.raises(ImportError, match=r"onnxscript.*tracerflow\[onnx\]"):
        export_models({0: deepsets(0)}, tmp_path, ["onnx"], **SIZES)


@needs_onnx
def test_onnx_refuses_the_gnn_whose_graph_depends_on_the_data(tmp_path):
    gnn = {**MODEL, "set": {"type": "gnn", "edge_columns": [0, 1], "hidden": 8, "n_layers": 1}}
    model = ModelBuilder(gnn, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=0)
    with pytest.raises(ValueError, match="GNN"):
        export_models({0: model}, tmp_path, ["onnx"], **SIZES)
    assert not list(tmp_path.iterdir())


def test_config_asking_for_onnx_without_its_packages_fails_on_predict_export(monkeypatch):
    monkeypatch.setattr("tracerflow.evaluate.export.onnx_missing", lambda: ["onnx", "onnxscript"])
    with pytest.raises(ConfigError) as err:
        load_config(None, ("predict.export=[torchscript, onnx]", "project.name=without-onnx"))
    assert err.value.key == "predict.export" and "tracerflow[onnx]" in err.value.message


@needs_onnx
def test_config_asking_for_onnx_of_a_gnn_fails_on_predict_export():
    gnn = "train.model.set={type: gnn, edge_columns: [0, 1], hidden: 8, n_layers: 1}"
    with pytest.raises(ConfigError) as err:
        load_config(None, ("predict.export=[onnx]", gnn))
    assert err.value.key == "predict.export" and "GNN" in err.value.message
    assert load_config(None, (gnn,))["predict"]["export"] == ["torchscript"]
