"""ApplySelections: events file -> passing index, cutflow and derived outputs.

Each derived output is stored with one dtype per kind of value, whatever the branch types of
the file it came from: booleans as ``bool``, every integer type as ``int64`` (wide enough for
any ROOT integer branch but uint64 above 2**63), floats as ``float32``. So the selections
files of one analysis agree on their dtypes, and the stages that join them need no promotion.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from tracerflow.columns import EVENT
from tracerflow.columns_scope import Scope
from tracerflow.io.events_file import EventsFile
from tracerflow.io.h5target import H5Writer
from tracerflow.io.selections_file import (GENERATOR_WEIGHT, GENERATOR_WEIGHT_PATH, INDEX_COLUMNS, SCHEMA,
                                           SCHEMA_VERSION)
from tracerflow.templates.selection import Cutflow, SelectionTemplate

OUTPUT_DTYPES = {"b": np.dtype(np.bool_), "i": np.dtype(np.int64), "u": np.dtype(np.int64), "f": np.dtype(np.float32)}


def output_dtype(values: np.ndarray) -> np.dtype:
    """The stored dtype of a selection output: bool, int64 or float32 by the kind of ``values``."""
    kind = np.asarray(values).dtype.kind
    if kind not in OUTPUT_DTYPES:
        raise TypeError(f"selection outputs hold booleans, integers or floats, not {np.asarray(values).dtype}")
    return OUTPUT_DTYPES[kind]


def _empty_output_dtypes(events: EventsFile, template: SelectionTemplate) -> dict[str, np.dtype]:
    """Output dtypes of a file without events, from the template applied to an empty chunk."""
    try:
        outputs = template.apply(events.read(0, 0)).outputs
    except (ValueError, KeyError, IndexError, TypeError):  # a template that cannot evaluate an empty chunk
        return {}
    return {name: output_dtype(values) for name, values in outputs.items()}


def apply_selection(
    events_path: str | os.PathLike,
    out_path: str | os.PathLike,
    template: SelectionTemplate,
    *,
    config_digest: str,
    created_by: str,
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> Cutflow:
    """Apply ``template`` to every event of ``events_path``; write the selections target."""
    cutflow = Cutflow.empty(template.cut_names())
    row_offset = 0
    output_dtypes: dict[str, np.dtype] = {}
    with EventsFile(events_path) as events, H5Writer(
        out_path, SCHEMA, SCHEMA_VERSION, config_digest, created_by,
        attrs={"template": template.describe(), "events_file": os.path.basename(events_path)},
    ) as writer:
        total = len(events)
        for start in range(0, total, chunk_size):
            batch = events.read(start, start + chunk_size)
            result = template.apply(batch)
            cutflow += result.cutflow
            scope = Scope(batch, template.level)
            event_row = scope.row_map(template.level, EVENT) if template.level != EVENT else np.arange(len(batch))
            passing = np.flatnonzero(result.mask)
            for column in ("hash", "sample", "file", "entry"):
                writer.append(f"index/{column}", batch.index[column][event_row[passing]])
            if template.level == EVENT:
                item = np.zeros(len(passing), dtype=np.int32)
            else:
                item = batch.tables[template.level].local_index()[passing].astype(np.int32)
            writer.append("index/item", item)
            writer.append("index/row", (row_offset + passing).astype(np.int64))
            generator = batch.event.get(GENERATOR_WEIGHT)
            writer.append(GENERATOR_WEIGHT_PATH, np.ones(len(passing), np.float32) if generator is None
                          else generator[event_row[passing]].astype(np.float32))
            row_offset += len(scope)
            for name, values in result.outputs.items():
                dtype = output_dtypes.setdefault(name, output_dtype(values))
                writer.append(f"derived/{name}", values.astype(dtype, copy=False))
            if progress:
                progress(min(start + chunk_size, total), total)
        dtypes = {"hash": np.uint64, "sample": np.uint16, "file": np.uint16, "entry": np.int64, "item": np.int32, "row": np.int64}
        for column in INDEX_COLUMNS:
            writer.ensure(f"index/{column}", dtypes[column])
        writer.ensure(GENERATOR_WEIGHT_PATH, np.float32)
        if total == 0:
            output_dtypes = _empty_output_dtypes(events, template)
        for name in template.output_names():
            writer.ensure(f"derived/{name}", output_dtypes.get(name, np.float32))
        writer.group("derived")  # there even when the template derives nothing
        writer.write("cutflow/name", np.array(cutflow.names, dtype=object).astype("S"))
        writer.write("cutflow/passed", cutflow.passed)
        writer.write("cutflow/weighted", cutflow.weighted)
        writer.set_attrs("index/sample", labels=events.labels("sample"))
        writer.set_attrs("index/file", labels=events.labels("file"))
        writer.set_attrs("/", n_passed=int(cutflow.passed[-1]), level=template.level)
    return cutflow
