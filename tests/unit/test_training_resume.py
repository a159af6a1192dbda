"""ContinueTraining resumes only a checkpoint made from the same inputs; a broken one is named."""
from __future__ import annotations

import pytest
import torch

from tracerflow.training.fold import resumable


def checkpoint(tmp_path, digest):
    path = tmp_path / "last.pt"
    torch.save({"version": 1, "epoch": 3, "inputs_digest": digest}, path)
    return path


def test_a_checkpoint_of_the_same_inputs_is_resumed(tmp_path):
    path = checkpoint(tmp_path, "abc")
    assert resumable(path, "abc") == path


def test_a_checkpoint_of_other_inputs_starts_fresh_and_says_so(tmp_path):
    path = checkpoint(tmp_path, "abc")
    with pytest.warns(UserWarning, match="made from other inputs"):
        assert resumable(path, "def") is None


def test_a_checkpoint_without_a_digest_is_not_resumed(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"version": 1, "epoch": 3}, path)
    with pytest.warns(UserWarning, match="other inputs"):
        assert resumable(path, "abc") is None


def test_no_checkpoint_nothing_to_resume(tmp_path):
    assert resumable(tmp_path / "last.pt", "abc") is None


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"garbage" * 100])
def test_a_corrupt_checkpoint_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        resumable(path, "abc")
    assert str(path) in str(err.value) and "continue_training" in str(err.value)
