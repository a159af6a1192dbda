"""tracerflow: HEP ROOT ntuples to trained, cross-validated models, as a Luigi DAG of HDF5 files.

The library never imports Luigi; the stages in :mod:`tracerflow.tasks` are thin wrappers
around the functions defined here.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
