"""resolve_device: auto falls back to cpu, cuda without CUDA fails clearly."""
from __future__ import annotations

import os

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


def test_a_cuda_device_pins_ieee_float32_and_deterministic_algorithms(monkeypatch):
    from tracerflow.models.device import pin_reproducible

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cuda.matmul.allow_tf32)  # a property of torch's cuBLAS module: monkeypatch cannot undo it
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        pin_reproducible("cpu")  # a CPU run is left as it is
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.allow_tf32
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        pin_reproducible(torch.device("cuda", 0))  # the settings only: no CUDA needed to make them
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cuda.matmul.allow_tf32 = was[2]
