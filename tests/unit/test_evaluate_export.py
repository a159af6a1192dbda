"""Model export: TorchScript and ONNX files that load without tracerflow and give the model's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tracerflow.config import ConfigError, load_config
from tracerflow.evaluate.export import export_models, onnx_missing
from tracerflow.models import ModelBuilder

N_JET_VARS, N_TRACK_VARS = 2, 5
SIZES = {"n_jet_vars": N_JET_VARS, "n_track_vars": N_TRACK_VARS}
MODEL = {"body": {"widths": [16], "activation": "relu"}, "tail": {"objective": "multiclass", "n_out": 3},
         "set": {"type": "deepsets", "phi_widths": [8, 8], "rho_widths": [8]}}

needs_onnx = pytest.mark.skipif(bool(onnx_missing()), reason="the onnx extra (onnx, onnxscript) is not installed")


def deepsets(seed: int) -> torch.nn.Module:
    return ModelBuilder(MODEL, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=seed).eval()


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
