"""PyTorch models built from a ``train.model`` config: LUMIN-style head/body/tail and set/graph encoders over tracks.

Each name is imported from its module on first use (:mod:`tracerflow._lazy`): the config check
reads :mod:`tracerflow.models.spec`, which needs no torch, and importing it must not import the layers.
"""
from tracerflow._lazy import lazy_exports

_MODULES = {
    ".blocks": ("ACTIVATIONS", "Body", "Head", "Tail", "embedding_size", "make_activation", "mlp"),
    ".builder": ("SET_TYPES", "FlatModel", "ModelBuilder", "MultiHeadModel", "count_parameters"),
    ".device": ("resolve_device",),
    ".graph": ("GraphSetEncoder", "MessagePassing", "tracks_to_graph", "tracks_to_knn"),
    ".sets": ("DeepSets", "TransformerEncoder"),
    ".spec": ("OBJECTIVES", "ModelSpec", "model_spec"),
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
