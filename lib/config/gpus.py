"""Whether this machine shows a CUDA GPU, without importing torch (the config check must stay light).

What counts: torch's own wheel (a ``+cpu`` build has no CUDA), ``CUDA_VISIBLE_DEVICES`` (empty or
``-1`` hides every GPU) and the NVIDIA driver's devices (``/proc/driver/nvidia/gpus/*`` or
``/dev/nvidia<N>``). It is read where the command runs: the training itself checks again with
torch (``torch.cuda.is_available()``) before any process starts.
"""
from __future__ import annotations

import glob
import importlib.metadata
import os


def torch_is_cpu_only() -> bool:
    """Whether the installed torch is a CPU-only build (its version carries ``+cpu``)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return True
    return version.partition("+")[2].startswith("cpu")


def visible_cuda_gpus() -> int:
    """How many CUDA GPUs a process started here could use (0 when none), read from the driver's
    files and ``CUDA_VISIBLE_DEVICES``; 0 with a CPU-only torch."""
    if torch_is_cpu_only():
        return 0
    present = len(glob.glob("/proc/driver/nvidia/gpus/*")) or len(glob.glob("/dev/nvidia[0-9]*"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return present
    listed = []
    for item in visible.split(","):
        if not item.strip() or item.strip().startswith("-"):
            break  # CUDA stops at the first invalid entry
        listed.append(item)
    return min(present, len(listed))
