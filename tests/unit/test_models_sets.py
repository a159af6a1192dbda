"""Set encoders over padded tracks: shapes, masking, empty jets, permutation invariance, TorchScript."""
from __future__ import annotations

import pytest
import torch

from tracerflow.models import DeepSets, GraphSetEncoder, TransformerEncoder

N_JETS, N_SLOTS, N_VARS = 7, 6, 4


def make_encoder(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "deepsets":
        return DeepSets(N_VARS, phi_widths=[16, 12], rho_widths=[10])
    if kind == "deepsets_mean":
        return DeepSets(N_VARS, phi_widths=[16, 12], rho_widths=[10], pooling="mean", norm="layer")
    if kind == "transformer":
        return TransformerEncoder(N_VARS, d_model=16, n_heads=2, n_layers=2, dim_feedforward=32, out_widths=[10])
    return GraphSetEncoder(N_VARS, edge_columns=[0, 1], hidden=10, n_layers=2)


KINDS = ["deepsets", "deepsets_mean", "transformer", "gnn"]


def padded_tracks(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Tracks with a ragged valid mask: jet 0 has no tracks, jet 1 one, jet 2 all slots."""
    gen = torch.Generator().manual_seed(seed)
    tracks = torch.randn(N_JETS, N_SLOTS, N_VARS, generator=gen)
    counts = torch.tensor([0, 1, N_SLOTS, 3, 2, 5, 4])
    valid = torch.arange(N_SLOTS)[None, :] < counts[:, None]
    tracks[~valid] = 0.0
    return tracks, valid


@pytest.mark.parametrize("kind", KINDS)
def test_shape_and_empty_jet_is_finite(kind):
    enc = make_encoder(kind).eval()
    tracks, valid = padded_tracks()
    out = enc(tracks, valid)
    assert out.shape == (N_JETS, 10)
    assert torch.isfinite(out).all()
    none = enc(tracks, torch.zeros_like(valid))
    assert torch.isfinite(none).all()


@pytest.mark.parametrize("kind", KINDS)
def test_padding_features_do_not_matter(kind):
    enc = make_encoder(kind).eval()
    tracks, valid = padded_tracks()
    changed = tracks.clone()
    changed[~valid] = torch.randn(int((~valid).sum()), N_VARS) * 1e3
    changed[0, 0] = float("nan")
    with torch.no_grad():
        assert torch.allclose(enc(tracks, valid), enc(changed, valid), atol=1e-6)


@pytest.mark.parametrize("kind", ["deepsets", "gnn"])
def test_padding_features_do_not_matter_in_training_mode(kind):
    enc = make_encoder(kind).train()
    tracks, valid = padded_tracks()
    changed = tracks.clone()
    changed[~valid] = 99.0
    assert torch.allclose(enc(tracks, valid), enc(changed, valid), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_invariance(kind):
    enc = make_encoder(kind).eval()
    tracks, valid = padded_tracks()
    gen = torch.Generator().manual_seed(5)
    perm = torch.stack([torch.randperm(N_SLOTS, generator=gen) for _ in range(N_JETS)])
    shuffled = torch.gather(tracks, 1, perm[:, :, None].expand(-1, -1, N_VARS))
    shuffled_valid = torch.gather(valid, 1, perm)
    with torch.no_grad():
        assert torch.allclose(enc(tracks, valid), enc(shuffled, shuffled_valid), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_jets_are_encoded_independently(kind):
    enc = make_encoder(kind).eval()
    tracks, valid = padded_tracks()
    with torch.no_grad():
        batch = enc(tracks, valid)
        alone = torch.cat([enc(tracks[i : i + 1], valid[i : i + 1]) for i in range(N_JETS)])
    assert torch.allclose(batch, alone, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_matches_eager(kind):
    enc = make_encoder(kind).eval()
    tracks, valid = padded_tracks()
    scripted = torch.jit.script(enc)
    with torch.no_grad():
        assert torch.allclose(scripted(tracks, valid), enc(tracks, valid), atol=1e-6)
        other, other_valid = padded_tracks(seed=9)
        assert torch.allclose(scripted(other[:3, :4], other_valid[:3, :4]), enc(other[:3, :4], other_valid[:3, :4]), atol=1e-6)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="pooling"):
        DeepSets(3, pooling="max")
    with pytest.raises(ValueError, match="divisible"):
        TransformerEncoder(3, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="edge_columns"):
        GraphSetEncoder(3, edge_columns=[3])
