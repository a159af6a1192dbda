"""resolve_device: auto falls back to cpu, cuda without CUDA fails clearly."""
from __future__ import annotations

import pytest
import torch

from tracerflow.models import resolve_device


def test_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_name():
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
