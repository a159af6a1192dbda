"""File formats: atomic HDF5 targets with schema attributes, and chunked ROOT reading."""
from tracerflow.io.h5target import (
    H5Writer,
    SchemaMismatch,
    TargetStatus,
    read_root_attrs,
    target_status,
)

__all__ = ["H5Writer", "SchemaMismatch", "TargetStatus", "read_root_attrs", "target_status"]
