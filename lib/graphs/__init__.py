"""Graphs from events: topologies and the BuildGraphs stage function."""
from tracerflow.graphs.topology import DeltaRCut, FullyConnected, KNearest, Topology, topology_from_config

__all__ = ["DeltaRCut", "FullyConnected", "KNearest", "Topology", "topology_from_config"]
