"""The ``train.model`` block as plain data, without torch: the keys each part takes, the set encoders
and objectives there are, and the sizes filled in from the train file.

:class:`~tracerflow.models.builder.ModelBuilder` validates its block here, and so does the config
check (:func:`~tracerflow.config.load_config`), which must not import torch: both refuse a block
with the same ``ValueError("<key>: <message>")``. What only the layers can tell (activation and
norm names, widths, dropout, ``n_out`` for the objective, heads dividing ``d_model``, edge columns
within the tracks) is checked when the model is built.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Optional

OBJECTIVES = ("binary", "multiclass", "regression")
HEAD_KEYS = ("n_cont", "cat_cardinalities", "embed_dims", "max_embed_dim", "embed_dropout")
BODY_KEYS = ("widths", "activation", "norm", "dropout")
TAIL_KEYS = ("objective", "n_out")
#: The keys of each set encoder (besides ``type``), by its ``type``.
SET_KEYS: dict[str, tuple[str, ...]] = {
    "deepsets": ("n_in", "phi_widths", "rho_widths", "activation", "norm", "dropout", "pooling"),
    "transformer": ("n_in", "d_model", "n_heads", "n_layers", "dim_feedforward", "dropout", "activation", "out_widths"),
    "gnn": ("n_in", "edge_columns", "hidden", "n_layers", "activation", "norm", "readout", "k"),
}
TOP_KEYS = ("head", "body", "tail", "set")


@dataclass
class ModelSpec:
    """A validated ``train.model`` block with its sizes filled in: the keyword arguments of the head,
    body and tail, and of the set encoder (with its ``type``; None for jets only)."""

    head: dict[str, Any]
    body: dict[str, Any]
    tail: dict[str, Any]
    set: Optional[dict[str, Any]]
    where: str = "train.model"

    @property
    def resolved_config(self) -> dict[str, Any]:
        """The block with sizes filled in, to record beside the trained weights."""
        return copy.deepcopy({"head": self.head, "body": self.body, "tail": self.tail, "set": self.set})


def model_spec(
    config: Mapping[str, Any],
    n_jet_vars: int | None = None,
    n_track_vars: int | None = None,
    where: str = "train.model",
) -> ModelSpec:
    """Validate a ``train.model`` block and fill ``head.n_cont`` from ``n_jet_vars`` (less the
    categorical columns) and ``set.n_in`` from ``n_track_vars``; a ValueError names the key."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key; expected one of {sorted(TOP_KEYS)}")
    head = _block(config, "head", where, HEAD_KEYS)
    body = _block(config, "body", where, BODY_KEYS)
    tail = _block(config, "tail", where, TAIL_KEYS)
    set_block = _set_block(config, n_track_vars, where)
    n_cat = len(head.get("cat_cardinalities") or ())
    n_cont = None if n_jet_vars is None else int(n_jet_vars) - n_cat
    _fill_size(head, "n_cont", n_cont, f"{where}.head", "n_jet_vars")
    objective = tail.get("objective", "multiclass")
    if objective not in OBJECTIVES:
        raise ValueError(f"{where}.tail.objective: unknown objective {objective!r}; expected one of {OBJECTIVES}")
    tail["objective"] = objective
    return ModelSpec(head, body, tail, set_block, where)


def _set_block(config: Mapping[str, Any], n_track_vars: int | None, where: str) -> dict[str, Any] | None:
    raw = config.get("set")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}.set: expected a mapping or null, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind not in SET_KEYS:
        raise ValueError(f"{where}.set.type: unknown set encoder {kind!r}; expected one of {sorted(SET_KEYS)}")
    block = _block({"set": {k: v for k, v in raw.items() if k != "type"}}, "set", where, SET_KEYS[kind])
    _fill_size(block, "n_in", n_track_vars, f"{where}.set", "n_track_vars")
    block["type"] = kind
    return block


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
