"""Ensemble weights (uniform, reciprocal loss) and the weighted mean of fold predictions."""
from __future__ import annotations

import numpy as np
import pytest

from tracerflow.evaluate.ensemble import ensemble, ensemble_weights


def test_uniform_weights_are_equal():
    assert ensemble_weights([0.3, 0.5, 0.9, 0.1]).tolist() == [0.25] * 4


def test_reciprocal_weights_are_normalised_inverse_losses():
    w = ensemble_weights([0.5, 1.0, 2.0], mode="reciprocal")
    assert w.sum() == pytest.approx(1.0)
    assert w == pytest.approx(np.array([2.0, 1.0, 0.5]) / 3.5)
    assert w[0] > w[1] > w[2]


@pytest.mark.parametrize("losses", [[0.5, 0.0], [0.5, -1.0], [0.5, np.nan]])
def test_reciprocal_weights_reject_non_positive_losses(losses):
    with pytest.raises(ValueError):
        ensemble_weights(losses, mode="reciprocal")


def test_unknown_mode_and_empty_losses_fail():
    with pytest.raises(ValueError):
        ensemble_weights([1.0], mode="best")
    with pytest.raises(ValueError):
        ensemble_weights([])


def test_ensemble_is_weighted_mean_and_keeps_float32():
    a = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    b = np.array([[0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    out = ensemble([a, b], [0.75, 0.25])
    assert out.dtype == np.float32
    assert out == pytest.approx(0.75 * a + 0.25 * b)
    assert ensemble([a, b]) == pytest.approx((a + b) / 2)
    # weights are renormalised, so rows of probabilities still sum to one
    assert ensemble([a, b], [3.0, 1.0]).sum(axis=1) == pytest.approx([1.0, 1.0])


def test_ensemble_checks_shapes_and_weights():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError):
        ensemble([a, np.zeros((3, 3))])
    with pytest.raises(ValueError):
        ensemble([a, a], [1.0])
    with pytest.raises(ValueError):
        ensemble([])
