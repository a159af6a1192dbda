"""SampleTracer: the event index (hash -> sample, file, entry, caches) over tracerflow's HDF5 files.

``SampleTracer`` keeps AnalysisG's surface (AddEvent/AddGraph/AddSelections, Dump/Restore of
the tracer and of events, graphs and selections, ``+``, ``in``, ``len``, ``[]``, iteration)
while holding only numpy index arrays; ``Event`` views read columns lazily, chunk by chunk.
"""
from tracerflow.tracer.sample_tracer import SampleTracer
from tracerflow.tracer.settings import Settings
from tracerflow.tracer.views import Event, Particle, Record

__all__ = ["SampleTracer", "Event", "Particle", "Record", "Settings"]
