"""One Luigi task per stage; each declares its HDF5 target and calls the library."""
from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.generate_sample import GenerateSample

STAGES = ("GenerateSample", "BuildEvents", "BuildGraphs", "ApplySelections")

__all__ = ["STAGES", "ApplySelections", "BuildEvents", "BuildGraphs", "GenerateSample", "H5Target", "TracerflowTask"]
