"""Set encoders over padded tracks with a ``valid`` mask: DIPS-like deep sets and a transformer encoder."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from tracerflow.models.blocks import mlp

POOLINGS = ("sum", "mean")


def masked_pool(h: Tensor, valid: Tensor, mean: bool) -> Tensor:
    """Sum (or mean) of ``h`` (B, T, D) over valid slots; a jet with no valid slot pools to zeros."""
    mask = valid.unsqueeze(-1)
    total = torch.where(mask, h, torch.zeros_like(h)).sum(dim=1)
    if mean:
        count = valid.sum(dim=1, keepdim=True).clamp(min=1).to(total.dtype)
        total = total / count
    return total


class DeepSets(nn.Module):
    """DIPS: a per-track phi net on valid tracks, masked sum (or mean) pooling, then a rho net."""

    def __init__(
        self,
        n_in: int,
        phi_widths: Sequence[int] = (100, 100, 128),
        rho_widths: Sequence[int] = (100,),
        activation: str = "relu",
        norm: str | None = None,
        dropout: float = 0.0,
        pooling: str = "sum",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        if not len(phi_widths):
            raise ValueError("phi_widths needs at least one layer")
        self.n_in = int(n_in)
        self.phi = mlp(n_in, phi_widths, activation, norm, dropout)
        self.rho = mlp(int(phi_widths[-1]), rho_widths, activation, norm, dropout)
        self.phi_dim = int(phi_widths[-1])
        self.mean = pooling == "mean"
        self.out_dim = int(rho_widths[-1]) if len(rho_widths) else self.phi_dim

    def forward(self, tracks: Tensor, valid: Tensor) -> Tensor:
        """(B, T, F) tracks and (B, T) bool mask -> (B, out_dim); padding slots never enter the phi net.

        The phi outputs of the valid tracks are summed into their jets with ``index_add_``, so no
        (B, T, D) tensor is built: padding costs neither memory nor time.
        """
        valid = valid.to(torch.bool)
        if not torch.jit.is_scripting():
            if torch.compiler.is_exporting():
                return self.rho(self._padded_pool(tracks, valid))
        where = valid.nonzero()
        jet = where[:, 0]
        h = self.phi(tracks[jet, where[:, 1]])
        pooled = h.new_zeros(tracks.shape[0], self.phi_dim).index_add_(0, jet, h)
        if self.mean:
            pooled = pooled / valid.sum(dim=1, keepdim=True).clamp(min=1).to(pooled.dtype)
        return self.rho(pooled)

    def _padded_pool(self, tracks: Tensor, valid: Tensor) -> Tensor:
        """The same pooling over every slot, padding masked out: what graph exports (ONNX) run, since
        onnxruntime's ScatterND with ``add`` loses updates when its threads hit the same jet."""
        return masked_pool(self.phi(tracks), valid, self.mean)


class TransformerEncoder(nn.Module):
    """Linear embedding of tracks, ``nn.TransformerEncoder`` with a key padding mask, masked mean pooling."""

    def __init__(
        self,
        n_in: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
        activation: str = "relu",
        out_widths: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if activation not in ("relu", "gelu"):
            raise ValueError(f"the transformer activation must be relu or gelu, got {activation!r}")
        self.n_in = int(n_in)
        self.embed = nn.Linear(n_in, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout, activation=activation, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = mlp(d_model, out_widths, "relu")
        self.out_dim = int(out_widths[-1]) if len(out_widths) else int(d_model)

    def forward(self, tracks: Tensor, valid: Tensor) -> Tensor:
        """(B, T, F) tracks and (B, T) bool mask -> (B, out_dim); jets without valid tracks give finite outputs."""
        valid = valid.to(torch.bool)
        x = torch.where(valid.unsqueeze(-1), tracks, torch.zeros_like(tracks))
        empty = ~valid.any(dim=1, keepdim=True)
        first = torch.zeros_like(valid)
        first[:, :1] = True
        attend = valid | (empty & first)
        h = self.encoder(self.embed(x), src_key_padding_mask=~attend)
        return self.out(masked_pool(h, valid, True))
