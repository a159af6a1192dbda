"""Build a model from the plain dict of a YAML ``train.model`` block: head, body, tail and an optional track set encoder."""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from tracerflow.models.blocks import OBJECTIVES, Body, Head, Tail
from tracerflow.models.graph import GraphSetEncoder
from tracerflow.models.sets import DeepSets, TransformerEncoder

SET_TYPES: dict[str, type[nn.Module]] = {
    "deepsets": DeepSets,
    "transformer": TransformerEncoder,
    "gnn": GraphSetEncoder,
}
HEAD_KEYS = ("n_cont", "cat_cardinalities", "embed_dims", "max_embed_dim", "embed_dropout")
BODY_KEYS = ("widths", "activation", "norm", "dropout")
TAIL_KEYS = ("objective", "n_out")
SET_KEYS: dict[str, tuple[str, ...]] = {
    "deepsets": ("n_in", "phi_widths", "rho_widths", "activation", "norm", "dropout", "pooling"),
    "transformer": ("n_in", "d_model", "n_heads", "n_layers", "dim_feedforward", "dropout", "activation", "out_widths"),
    "gnn": ("n_in", "edge_columns", "hidden", "n_layers", "activation", "norm", "readout", "k"),
}
TOP_KEYS = ("head", "body", "tail", "set")


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


def _block(config: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The sub-block ``key`` as a dict, refusing keys the block does not know."""
    block = config.get(key) or {}
    if not isinstance(block, Mapping):
        raise ValueError(f"{where}.{key}: expected a mapping, got {type(block).__name__}")
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise ValueError(f"{where}.{key}.{unknown[0]}: unknown key; expected one of {sorted(allowed)}")
    return dict(block)


def _fill_size(block: dict[str, Any], key: str, inferred: int | None, where: str, source: str) -> None:
    """Set ``block[key]`` from the train file's size when absent, or check that both agree."""
    if block.get(key) is None:
        if inferred is None:
            raise ValueError(f"{where}.{key}: missing, and {source} was not given to infer it")
        block[key] = int(inferred)
    elif inferred is not None and int(block[key]) != int(inferred):
        raise ValueError(f"{where}.{key}: config says {block[key]}, the train file has {inferred} ({source})")


class ModelBuilder:
    """Validate a ``train.model`` config, fill sizes from the train file, and build the model it describes."""

    def __init__(
        self,
        config: Mapping[str, Any],
        n_jet_vars: int | None = None,
        n_track_vars: int | None = None,
        where: str = "train.model",
    ) -> None:
        if not isinstance(config, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - set(TOP_KEYS))
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; expected one of {sorted(TOP_KEYS)}")
        self.where = where
        self.head = _block(config, "head", where, HEAD_KEYS)
        self.body = _block(config, "body", where, BODY_KEYS)
        self.tail = _block(config, "tail", where, TAIL_KEYS)
        self.set = self._set_block(config, n_track_vars)
        n_cat = len(self.head.get("cat_cardinalities") or ())
        n_cont = None if n_jet_vars is None else int(n_jet_vars) - n_cat
        _fill_size(self.head, "n_cont", n_cont, f"{where}.head", "n_jet_vars")
        objective = self.tail.get("objective", "multiclass")
        if objective not in OBJECTIVES:
            raise ValueError(f"{where}.tail.objective: unknown objective {objective!r}; expected one of {OBJECTIVES}")
        self.tail["objective"] = objective

    def _set_block(self, config: Mapping[str, Any], n_track_vars: int | None) -> dict[str, Any] | None:
        raw = config.get("set")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ValueError(f"{self.where}.set: expected a mapping or null, got {type(raw).__name__}")
        kind = raw.get("type")
        if kind not in SET_TYPES:
            raise ValueError(f"{self.where}.set.type: unknown set encoder {kind!r}; expected one of {sorted(SET_TYPES)}")
        block = _block({"set": {k: v for k, v in raw.items() if k != "type"}}, "set", self.where, SET_KEYS[kind])
        _fill_size(block, "n_in", n_track_vars, f"{self.where}.set", "n_track_vars")
        block["type"] = kind
        return block

    @property
    def resolved_config(self) -> dict[str, Any]:
        """The config with sizes filled in, to record beside the trained weights."""
        return copy.deepcopy({"head": self.head, "body": self.body, "tail": self.tail, "set": self.set})

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
