"""Export trained fold models as TorchScript or ONNX, loadable without tracerflow.

TorchScript loads with ``torch.jit.load``; ONNX (the optional ``onnx`` extra: onnx and
onnxscript) with any ONNX runtime. Both take ``(jets, tracks, valid)`` of any batch size and
track count and return the logits.

The same weights give the same bytes in every process: TorchScript lists a module's constants in the
iteration order of a Python ``set`` of their names (so it changes with the string hash seed), and its
archive's serialization id is a checksum of the records, so :func:`export_torchscript` sorts each
class's constants and rewrites the archive with its records in name order (the ONNX exporter's output
already depends on the model alone). Both formats keep the
model code's source file paths as debug information, so a different installation gives other bytes.
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch

from tracerflow.io.atomic import replacing, write_atomic
from tracerflow.models.graph import GraphSetEncoder

FORMATS = ("torchscript", "onnx")
ONNX_MODULES = ("onnx", "onnxscript")
ONNX_OPSET = 18
ONNX_UNSUPPORTED = (GraphSetEncoder,)
"""Set encoders whose graph depends on the data (the GNN builds edges from the valid tracks): a traced
ONNX graph would keep the example's track and edge counts."""


def onnx_missing() -> list[str]:
    """The modules ONNX export needs that are not installed (empty when it can run)."""
    return [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None]


def export_models(models: Mapping[int, torch.nn.Module], out_dir: str | os.PathLike, formats: Sequence[str], *,
                  n_jet_vars: int, n_track_vars: int) -> list[Path]:
    """Write every fold model in each of ``formats`` (models take ``n_jet_vars`` jet and ``n_track_vars``
    track inputs)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; expected one of {', '.join(FORMATS)}")
    written = []
    if "torchscript" in formats:
        written += export_torchscript(models, out_dir)
    if "onnx" in formats:
        written += export_onnx(models, out_dir, n_jet_vars=n_jet_vars, n_track_vars=n_track_vars)
    return written


def export_torchscript(models: Mapping[int, torch.nn.Module], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``fold_<k>.torchscript.pt`` per fold model (scripted, so any batch and track count works)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fold, model in sorted(models.items()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*torch.jit.save.*is deprecated", category=DeprecationWarning)
            scripted = torch.jit.script(model.eval())
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
        path = out_dir / f"fold_{fold}.torchscript.pt"
        write_atomic(path, canonical_torchscript(buffer.getvalue()))
        written.append(path)
    return written


WRITER_RECORDS = frozenset({"version", ".data/version", "byteorder", ".data/serialization_id"})
"""Records the archive writer adds itself when it closes an archive."""
CONSTANT_LINE = re.compile(r"( +)\w+ : Final\[.*\] = .*")
"""A constant in a TorchScript class body, as the code printer writes it: ``  name : Final[type] = value``."""


def canonical_torchscript(archive: bytes) -> bytes:
    """The TorchScript ``archive`` rewritten so that it depends on the module alone: each class's
    constants in name order, records in name order under the archive name ``archive``, and the
    serialization id the writer derives from the records' names and contents.

    Sorting keeps each code record's length and the offsets of everything else in it, which is all its
    ``.debug_pkl`` source map refers to."""
    reader = torch._C.PyTorchFileReader(io.BytesIO(archive))
    names = reader.get_all_records()
    version = next(reader.get_record(n) for n in ("version", ".data/version") if n in names)
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    writer.set_min_version(int(version))
    for name in sorted(set(names) - WRITER_RECORDS):
        data = reader.get_record(name)
        if name.startswith("code/") and name.endswith(".py"):
            data = _sorted_constants(data.decode()).encode()
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return out.getvalue()


def _sorted_constants(code: str) -> str:
    """``code`` with every run of consecutive constant lines of one indentation in sorted order."""
    lines = code.split("\n")
    start = 0
    while start < len(lines):
        match = CONSTANT_LINE.fullmatch(lines[start])
        end = start + 1
        if match:
            indent = match.group(1)
            while end < len(lines) and (m := CONSTANT_LINE.fullmatch(lines[end])) and m.group(1) == indent:
                end += 1
            lines[start:end] = sorted(lines[start:end])
        start = end
    return "\n".join(lines)


def export_onnx(models: Mapping[int, torch.nn.Module], out_dir: str | os.PathLike, *, n_jet_vars: int,
                n_track_vars: int) -> list[Path]:
    """Write ``fold_<k>.onnx`` per fold model: inputs ``jets``, ``tracks``, ``valid`` with dynamic
    ``batch`` and ``track`` axes, output ``logits`` (opset :data:`ONNX_OPSET`)."""
    missing = onnx_missing()
    if missing:
        raise ImportError(f"ONNX export needs {' and '.join(missing)}: pip install 'tracerflow[onnx]'")
    for fold, model in sorted(models.items()):
        if any(isinstance(m, ONNX_UNSUPPORTED) for m in model.modules()):
            raise ValueError(f"fold {fold}: the GNN set encoder builds its graph from the data and has no ONNX export")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = _example(n_jet_vars, n_track_vars)
    batch, track = torch.export.Dim("batch"), torch.export.Dim("track")
    shapes = {"jets": {0: batch}, "tracks": {0: batch, 1: track}, "valid": {0: batch, 1: track}}
    written = []
    for fold, model in sorted(models.items()):
        path = out_dir / f"fold_{fold}.onnx"
        with warnings.catch_warnings():
            for category in (UserWarning, FutureWarning, DeprecationWarning):
                warnings.simplefilter("ignore", category)
            program = torch.onnx.export(model.eval(), example, input_names=["jets", "tracks", "valid"],
                                        output_names=["logits"], dynamic_shapes=shapes, opset_version=ONNX_OPSET,
                                        dynamo=True, verbose=False)
        with replacing(path) as tmp:
            program.save(str(tmp))
        written.append(path)
    return written


def _example(n_jet_vars: int, n_track_vars: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed batch to trace: sizes above 1 on the dynamic axes (the exporter fixes axes of size 0 or 1)."""
    gen = torch.Generator().manual_seed(0)
    n, slots = 4, 6
    valid = torch.arange(slots)[None, :] < torch.tensor([0, 1, 3, slots])[:, None]
    return (torch.randn(n, n_jet_vars, generator=gen), torch.randn(n, slots, n_track_vars, generator=gen), valid)
