"""PyTorch models built from a ``train.model`` config: LUMIN-style head/body/tail and set/graph encoders over tracks."""
from tracerflow.models.blocks import ACTIVATIONS, OBJECTIVES, Body, Head, Tail, embedding_size, make_activation, mlp
from tracerflow.models.builder import SET_TYPES, FlatModel, ModelBuilder, MultiHeadModel, count_parameters
from tracerflow.models.device import resolve_device
from tracerflow.models.graph import GraphSetEncoder, MessagePassing, tracks_to_graph, tracks_to_knn
from tracerflow.models.sets import DeepSets, TransformerEncoder

__all__ = [
    "ACTIVATIONS",
    "OBJECTIVES",
    "SET_TYPES",
    "Body",
    "DeepSets",
    "FlatModel",
    "GraphSetEncoder",
    "Head",
    "MessagePassing",
    "ModelBuilder",
    "MultiHeadModel",
    "Tail",
    "TransformerEncoder",
    "count_parameters",
    "embedding_size",
    "make_activation",
    "mlp",
    "resolve_device",
    "tracks_to_graph",
    "tracks_to_knn",
]
