"""ModelBuilder: config validation, flat and multi-head models, seeds, training smoke test, TorchScript."""
from __future__ import annotations

import pytest
import torch

from tracerflow.models import FlatModel, ModelBuilder, MultiHeadModel, count_parameters

N_JET_VARS, N_TRACK_VARS, N_SLOTS = 4, 5, 8
SETS = {
    "none": None,
    "deepsets": {"type": "deepsets", "phi_widths": [16, 16], "rho_widths": [16]},
    "transformer": {"type": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1, "dim_feedforward": 32},
    "gnn": {"type": "gnn", "edge_columns": [0, 1], "hidden": 12, "n_layers": 2},
}
TAILS = {"binary": {"objective": "binary"}, "multiclass": {"objective": "multiclass", "n_out": 3},
         "regression": {"objective": "regression", "n_out": 2}}


def config(set_block=None, tail=None, **head) -> dict:
    return {
        "head": {"cat_cardinalities": [3], **head},
        "body": {"widths": [32, 16], "activation": "swish", "norm": "layer", "dropout": 0.0},
        "tail": tail or TAILS["multiclass"],
        "set": set_block,
    }


def build(set_block=None, tail=None, seed: int = 0) -> torch.nn.Module:
    return ModelBuilder(config(set_block, tail), n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build(seed=seed)


def synthetic(n: int, seed: int = 0, n_classes: int = 3):
    """Jets whose class shows in both jet and track features; the last jet column is a categorical code."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n,), generator=gen)
    jets = torch.randn(n, N_JET_VARS, generator=gen) + 0.5 * labels[:, None]
    jets[:, -1] = torch.randint(0, 3, (n,), generator=gen).float()
    counts = torch.randint(0, N_SLOTS + 1, (n,), generator=gen)
    valid = torch.arange(N_SLOTS)[None, :] < counts[:, None]
    tracks = torch.randn(n, N_SLOTS, N_TRACK_VARS, generator=gen) + labels[:, None, None].float()
    tracks[~valid] = 0.0
    return jets, tracks, valid, labels


@pytest.mark.parametrize("set_name", sorted(SETS))
@pytest.mark.parametrize("tail_name", sorted(TAILS))
def test_output_shapes(set_name, tail_name):
    model = build(SETS[set_name], TAILS[tail_name]).eval()
    assert isinstance(model, FlatModel if set_name == "none" else MultiHeadModel)
    jets, tracks, valid, _ = synthetic(9)
    out = model(jets, tracks, valid)
    n_out = {"binary": 1, "multiclass": 3, "regression": 2}[tail_name]
    assert out.shape == (9, n_out)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


def test_flat_model_ignores_tracks_and_multi_head_needs_them():
    jets, tracks, valid, _ = synthetic(5)
    flat = build().eval()
    assert torch.equal(flat(jets), flat(jets, tracks, valid))
    with pytest.raises(ValueError, match="tracks and valid"):
        build(SETS["deepsets"])(jets)


def test_sizes_come_from_the_train_file_or_must_agree():
    builder = ModelBuilder(config(SETS["deepsets"]), n_jet_vars=6, n_track_vars=7)
    assert builder.resolved_config["head"]["n_cont"] == 5
    assert builder.resolved_config["set"]["n_in"] == 7
    with pytest.raises(ValueError, match=r"train\.model\.head\.n_cont"):
        ModelBuilder(config(n_cont=2), n_jet_vars=6)
    with pytest.raises(ValueError, match=r"train\.model\.set\.n_in: missing"):
        ModelBuilder(config(SETS["deepsets"]), n_jet_vars=6)


@pytest.mark.parametrize(
    "cfg,key",
    [
        (config({"type": "lstm"}), r"train\.model\.set\.type"),
        (config(tail={"objective": "ranking"}), r"train\.model\.tail\.objective"),
        (config(tail={"objective": "multiclass", "n_out": 1}), r"train\.model\.tail"),
        ({**config(), "bodyy": {}}, r"train\.model\.bodyy"),
        (config(SETS["deepsets"] | {"phi": [3]}), r"train\.model\.set\.phi"),
        ({**config(), "body": {"widths": [4], "activation": "tanhh"}}, r"train\.model\.body: unknown activation"),
        ({**config(), "body": {"width": [4]}}, r"train\.model\.body\.width"),
    ],
)
def test_errors_name_the_config_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        ModelBuilder(cfg, n_jet_vars=N_JET_VARS, n_track_vars=N_TRACK_VARS).build()


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_same_seed_same_parameters(set_name):
    def params(model):
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = build(SETS[set_name], seed=3), build(SETS[set_name], seed=3), build(SETS[set_name], seed=4)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    assert not all(torch.equal(x, y) for x, y in zip(params(a), params(c)))
    torch.manual_seed(11)
    d = ModelBuilder(config(SETS[set_name]), N_JET_VARS, N_TRACK_VARS).build()
    torch.manual_seed(11)
    e = ModelBuilder(config(SETS[set_name]), N_JET_VARS, N_TRACK_VARS).build()
    assert all(torch.equal(x, y) for x, y in zip(params(d), params(e)))


def test_build_with_seed_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build(SETS["deepsets"], seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_deepsets_multiclass_training_reduces_the_loss():
    jets, tracks, valid, labels = synthetic(300, seed=2)
    model = build(SETS["deepsets"], seed=0).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        start = loss_fn(model(jets, tracks, valid), labels).item()
    for _ in range(30):
        optimiser.zero_grad()
        loss = loss_fn(model(jets, tracks, valid), labels)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        end = loss_fn(model(jets, tracks, valid), labels).item()
    assert end < 0.8 * start


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("set_name", sorted(SETS))
def test_torchscript_matches_eager(set_name):
    model = build(SETS[set_name]).eval()
    jets, tracks, valid, _ = synthetic(12, seed=4)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        assert torch.allclose(scripted(jets, tracks, valid), model(jets, tracks, valid), atol=1e-6)
        more = synthetic(5, seed=8)
        assert torch.allclose(scripted(*more[:3]), model(*more[:3]), atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean:torch.jit.TracerWarning")
def test_flat_model_traces():
    model = build().eval()
    jets = synthetic(6)[0]
    traced = torch.jit.trace(model, (jets,))
    other = synthetic(10, seed=3)[0]
    with torch.no_grad():
        assert torch.allclose(traced(other), model(other), atol=1e-6)


@pytest.mark.parametrize("set_name", sorted(SETS))
def test_torch_export_matches_eager(set_name):
    model = build(SETS[set_name]).eval()
    jets, tracks, valid, _ = synthetic(12, seed=4)
    exported = torch.export.export(model, (jets, tracks, valid)).module()
    with torch.no_grad():
        assert torch.allclose(exported(jets, tracks, valid), model(jets, tracks, valid), atol=1e-6)
