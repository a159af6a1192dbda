"""Build a model from the plain dict of a YAML ``train.model`` block: head, body, tail and an optional track set encoder."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from tracerflow.models.blocks import Body, Head, Tail
from tracerflow.models.graph import GraphSetEncoder
from tracerflow.models.sets import DeepSets, TransformerEncoder
from tracerflow.models.spec import SET_KEYS, model_spec

SET_TYPES: dict[str, type[nn.Module]] = {
    "deepsets": DeepSets,
    "transformer": TransformerEncoder,
    "gnn": GraphSetEncoder,
}
assert set(SET_TYPES) == set(SET_KEYS), "every set encoder of the model spec has a module, and no other"


class FlatModel(nn.Module):
    """Jets only: tail(body(head(jets)))."""

    def __init__(self, head: Head, body: Body, tail: Tail) -> None:
        super().__init__()
        self.head, self.body, self.tail = head, body, tail

    def forward(self, jets: Tensor, tracks: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Tensor:
        """(B, n_jet_vars) -> (B, n_out); ``tracks`` and ``valid`` are accepted and ignored."""
        return self.tail(self.body(self.head(jets)))


class MultiHeadModel(nn.Module):
    """Jets through the head and tracks through a set encoder, concatenated into the body."""

    def __init__(self, head: Head, set_encoder: nn.Module, body: Body, tail: Tail) -> None:
        super().__init__()
        self.head, self.set_encoder, self.body, self.tail = head, set_encoder, body, tail

    def forward(self, jets: Tensor, tracks: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Tensor:
        """(B, n_jet_vars), (B, T, n_track_vars), (B, T) bool -> (B, n_out)."""
        if tracks is None or valid is None:
            raise ValueError("this model has a track set encoder: pass tracks and valid")
        joined = torch.cat([self.head(jets), self.set_encoder(tracks, valid)], dim=1)
        return self.tail(self.body(joined))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, for logs and model summaries."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class ModelBuilder:
    """Validate a ``train.model`` config, fill sizes from the train file, and build the model it describes."""

    def __init__(
        self,
        config: Mapping[str, Any],
        n_jet_vars: int | None = None,
        n_track_vars: int | None = None,
        where: str = "train.model",
    ) -> None:
        self.spec = model_spec(config, n_jet_vars, n_track_vars, where)
        self.where = where
        self.head, self.body, self.tail, self.set = self.spec.head, self.spec.body, self.spec.tail, self.spec.set

    @property
    def resolved_config(self) -> dict[str, Any]:
        """The config with sizes filled in, to record beside the trained weights."""
        return self.spec.resolved_config

    def build(self, seed: int | None = None) -> nn.Module:
        """A :class:`FlatModel` or :class:`MultiHeadModel`; with ``seed`` the init uses it and leaves torch's RNG as it was."""
        if seed is None:
            return self._build()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build()

    def _build(self) -> nn.Module:
        head = self._make(Head, self.head, "head")
        set_encoder = None
        n_body_in = head.out_dim
        if self.set is not None:
            kwargs = {k: v for k, v in self.set.items() if k != "type"}
            set_encoder = self._make(SET_TYPES[self.set["type"]], kwargs, "set")
            n_body_in += set_encoder.out_dim
        body = self._make(Body, {"n_in": n_body_in, **self.body}, "body")
        tail = self._make(Tail, {"n_in": body.out_dim, **self.tail}, "tail")
        if set_encoder is None:
            return FlatModel(head, body, tail)
        return MultiHeadModel(head, set_encoder, body, tail)

    def _make(self, cls: type[nn.Module], kwargs: Mapping[str, Any], key: str) -> Any:
        """Construct ``cls``, prefixing a ValueError with the config key it came from."""
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise ValueError(f"{self.where}.{key}: {err}") from err
