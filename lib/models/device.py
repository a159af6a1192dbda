"""Pick the torch device a training or prediction runs on, from the config's ``device`` string."""
from __future__ import annotations

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
