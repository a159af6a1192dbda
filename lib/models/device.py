"""Pick the torch device a training or prediction runs on, from the config's ``device`` string,
and pin what makes a CUDA run reproducible (:func:`pin_reproducible`: training, prediction and the
background generator call it with their device)."""
from __future__ import annotations

import os

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cpu``; ``cuda`` or ``cuda:N`` only when CUDA is available."""
    if isinstance(name, torch.device):
        name = str(name)
    kind = name.split(":", 1)[0]
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return device
    raise ValueError(f"device must be one of {DEVICE_CHOICES} (or 'cuda:N'), got {name!r}")


def pin_reproducible(device: str | torch.device) -> None:
    """On a CUDA device: float32 as IEEE float32 (cuDNN's convolutions default to TF32, 10-bit
    mantissas), cuDNN's deterministic algorithms without autotuning, torch's deterministic
    algorithms (a warning, not an error, for an op that has none) and the cuBLAS workspace they
    need (set unless the environment sets it; it takes effect where cuBLAS starts after this). The
    settings are the process's; nothing is changed for a CPU device, whose kernels are already
    deterministic and float32."""
    if torch.device(device).type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
