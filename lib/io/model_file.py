"""The trained-model HDF5 layout: ``/weights/<state_dict key>`` plus the config that rebuilds it.

No pickles: every tensor of the model's ``state_dict`` is a dataset (keys with dots kept
as dataset names), and the root attributes hold the resolved ``train.model`` config, the
class names, the fold and the training summary, so :func:`load_model` needs nothing else.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Mapping

import h5py
import numpy as np
from tracerflow.io.h5target import H5Writer, check_schema

if TYPE_CHECKING:
    import torch

SCHEMA = "tracerflow.model"
SCHEMA_VERSION = 1


def write_model(path: str | os.PathLike, model: torch.nn.Module, model_config: Mapping[str, Any], *,
                config_digest: str, created_by: str, attrs: Mapping[str, Any] | None = None) -> None:
    """Store ``model``'s weights and the config that builds it, atomically."""
    with H5Writer(path, SCHEMA, SCHEMA_VERSION, config_digest, created_by,
                  attrs={"model_config": json.dumps(dict(model_config), sort_keys=True), **dict(attrs or {})}) as writer:
        for key, tensor in model.state_dict().items():
            writer.write(f"weights/{key}", tensor.detach().cpu().numpy())


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a model file (eval mode, CPU) and its root attributes."""
    with h5py.File(path, "r") as f:
        check_schema(f, SCHEMA, SCHEMA_VERSION)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        state = {key: np.array(f["weights"][key]) for key in f["weights"]}
    import torch

    from tracerflow.models import ModelBuilder  # torch: only when a model is loaded

    state = {key: torch.from_numpy(value) for key, value in state.items()}
    model = ModelBuilder(json.loads(attrs["model_config"])).build()
    model.load_state_dict(state)
    return model.eval(), attrs
