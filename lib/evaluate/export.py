"""Export trained fold models as TorchScript, loadable with ``torch.jit.load`` and no tracerflow."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping

import torch


def export_torchscript(models: Mapping[int, torch.nn.Module], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``fold_<k>.torchscript.pt`` per fold model (scripted, so any batch and track count works)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fold, model in sorted(models.items()):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=DeprecationWarning)
            scripted = torch.jit.script(model.eval())
        path = out_dir / f"fold_{fold}.torchscript.pt"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        scripted.save(str(tmp))
        os.replace(tmp, path)
        written.append(path)
    return written
