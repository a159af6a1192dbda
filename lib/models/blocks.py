"""LUMIN-style head, body and tail: embed the inputs, transform them with a fully connected net, map to the objective."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from tracerflow.models.spec import OBJECTIVES

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
}
NORMS = (None, "batch", "layer")
MAX_EMBED_DIM = 50


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (relu, swish/silu, selu, gelu)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def embedding_size(cardinality: int, max_dim: int = MAX_EMBED_DIM) -> int:
    """LUMIN's default embedding width for a categorical feature: ``min(max_dim, (cardinality + 1) // 2)``."""
    if cardinality < 1:
        raise ValueError(f"a categorical feature needs a cardinality >= 1, got {cardinality}")
    return max(1, min(max_dim, (cardinality + 1) // 2))


def init_linear(layer: nn.Linear, activation: str | None) -> None:
    """Initialise a linear layer for the activation after it (He for relu-like, LeCun for selu, Glorot otherwise)."""
    if activation == "selu":
        nn.init.normal_(layer.weight, std=1.0 / math.sqrt(layer.in_features))
    elif activation is None:
        nn.init.xavier_uniform_(layer.weight)
    else:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def mlp(
    n_in: int,
    widths: Sequence[int],
    activation: str = "relu",
    norm: str | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear -> [norm] -> activation -> [dropout] for each width; an empty ``widths`` gives the identity."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    make_activation(activation)
    layers: list[nn.Module] = []
    for width in widths:
        if int(width) < 1:
            raise ValueError(f"layer widths must be positive, got {list(widths)}")
        linear = nn.Linear(n_in, int(width))
        init_linear(linear, activation)
        layers.append(linear)
        if norm == "batch":
            layers.append(nn.BatchNorm1d(int(width)))
        elif norm == "layer":
            layers.append(nn.LayerNorm(int(width)))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.AlphaDropout(dropout) if activation == "selu" else nn.Dropout(dropout))
        n_in = int(width)
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Continuous columns pass through; categorical columns (after them, as integer codes) go through embeddings."""

    def __init__(
        self,
        n_cont: int,
        cat_cardinalities: Sequence[int] = (),
        embed_dims: Sequence[int] | None = None,
        max_embed_dim: int = MAX_EMBED_DIM,
        embed_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cards = [int(c) for c in cat_cardinalities]
        if embed_dims is None:
            dims = [embedding_size(c, max_embed_dim) for c in cards]
        else:
            dims = [int(d) for d in embed_dims]
            if len(dims) != len(cards):
                raise ValueError(f"{len(dims)} embedding sizes given for {len(cards)} categorical features")
        if n_cont < 0:
            raise ValueError(f"n_cont must be >= 0, got {n_cont}")
        self.n_cont = int(n_cont)
        self.n_cat = len(cards)
        self.n_inputs = self.n_cont + self.n_cat
        self.cat_cardinalities = cards
        self.embeds = nn.ModuleList([nn.Embedding(c, d) for c, d in zip(cards, dims)])
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.out_dim = self.n_cont + sum(dims)

    def forward(self, x: Tensor) -> Tensor:
        """(B, n_cont + n_cat) -> (B, n_cont + sum of embedding sizes)."""
        if x.shape[-1] != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input columns, got {x.shape[-1]}")
        parts = [x[:, : self.n_cont]]
        for i, embed in enumerate(self.embeds):
            codes = x[:, self.n_cont + i].long()
            parts.append(self.embed_dropout(embed(codes)))
        return torch.cat(parts, dim=1)


class Body(nn.Module):
    """Fully connected layers with a chosen activation, optional batch/layer norm and dropout."""

    def __init__(
        self,
        n_in: int,
        widths: Sequence[int] = (100, 100),
        activation: str = "relu",
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = mlp(n_in, widths, activation, norm, dropout)
        self.out_dim = int(widths[-1]) if len(widths) else int(n_in)

    def forward(self, x: Tensor) -> Tensor:
        """(B, n_in) -> (B, out_dim)."""
        return self.layers(x)


class Tail(nn.Module):
    """Raw outputs for the objective: 1 logit (binary), n logits (multiclass) or n values (regression)."""

    def __init__(self, n_in: int, objective: str = "multiclass", n_out: int | None = None) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        if objective == "binary":
            if n_out not in (None, 1):
                raise ValueError(f"the binary objective has 1 output, got n_out={n_out}")
            n_out = 1
        elif objective == "multiclass" and (n_out is None or n_out < 2):
            raise ValueError(f"the multiclass objective needs n_out >= 2, got {n_out}")
        elif objective == "regression" and (n_out is None or n_out < 1):
            raise ValueError(f"the regression objective needs n_out >= 1, got {n_out}")
        self.objective = objective
        self.n_out = int(n_out)
        self.linear = nn.Linear(n_in, self.n_out)
        init_linear(self.linear, None)

    def forward(self, x: Tensor) -> Tensor:
        """(B, n_in) -> (B, n_out) logits or values (no sigmoid/softmax: losses take logits)."""
        return self.linear(x)
