"""What a train chunk carries, from the ``write`` block: :class:`Columns` and :func:`train_columns`.

Plain data, with no numba or h5py: the config check sizes the model block from it, and WriteTrainSample
and the train-file readers use the same names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracerflow.templates.loader import load_template

if TYPE_CHECKING:
    from tracerflow.config.load import Config


@dataclass(frozen=True)
class Columns:
    """What a train chunk carries: jet variables, add_labels and regression targets (selection
    outputs), track variables and labels (graph node features and node truth), and the track
    slots per jet."""

    jet_vars: tuple[str, ...]
    add_labels: tuple[str, ...]
    track_vars: tuple[str, ...]
    track_labels: tuple[str, ...]
    max_tracks: int
    targets: tuple[str, ...] = ()


def train_columns(cfg: Config) -> Columns:
    """What a train chunk carries, from the ``write`` block (track variables default to every node
    feature; an analysis without graphs has no tracks)."""
    write = cfg["write"]
    tracks = write["tracks"]
    targets = tuple(write["targets"])
    if cfg["graph"] is None:
        return Columns(tuple(write["jets"]["variables"]), tuple(write["add_labels"]), (), (), 0, targets)
    track_vars = tracks["variables"]
    if track_vars is None:
        track_vars = list(load_template(cfg, "graph").node_features)
    return Columns(tuple(write["jets"]["variables"]), tuple(write["add_labels"]), tuple(track_vars),
                   tuple(tracks["labels"]), tracks["max_tracks"], targets)
