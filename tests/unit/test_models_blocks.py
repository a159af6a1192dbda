"""Head (continuous + embedded categorical inputs), Body and Tail of the LUMIN-style models."""
from __future__ import annotations

import pytest
import torch

from tracerflow.models import ACTIVATIONS, Body, Head, Tail, embedding_size, make_activation


def test_embedding_size_follows_lumin_rule():
    assert embedding_size(2) == 1
    assert embedding_size(5) == 3
    assert embedding_size(1000) == 50
    assert embedding_size(1000, max_dim=8) == 8
    with pytest.raises(ValueError):
        embedding_size(0)


def test_head_embeds_categorical_columns_after_continuous_ones():
    torch.manual_seed(0)
    head = Head(n_cont=3, cat_cardinalities=[4, 10])
    assert [e.num_embeddings for e in head.embeds] == [4, 10]
    assert [e.embedding_dim for e in head.embeds] == [2, 5]
    assert head.out_dim == 3 + 2 + 5
    x = torch.randn(6, 5)
    x[:, 3] = torch.tensor([0, 1, 2, 3, 0, 1], dtype=torch.float32)
    x[:, 4] = torch.tensor([9, 8, 7, 0, 1, 2], dtype=torch.float32)
    out = head(x)
    assert out.shape == (6, 10)
    assert torch.equal(out[:, :3], x[:, :3])
    assert torch.equal(out[:, 3:5], head.embeds[0].weight[x[:, 3].long()])
    assert torch.equal(out[:, 5:], head.embeds[1].weight[x[:, 4].long()])
    assert torch.equal(out[0, 3:5], out[4, 3:5])


def test_head_explicit_embedding_sizes_and_column_check():
    head = Head(n_cont=2, cat_cardinalities=[3], embed_dims=[7])
    assert head.out_dim == 9
    with pytest.raises(ValueError, match="embedding sizes"):
        Head(n_cont=2, cat_cardinalities=[3], embed_dims=[7, 2])
    with pytest.raises(ValueError, match="input columns"):
        head(torch.zeros(4, 4))


def test_head_without_categoricals_is_identity():
    head = Head(n_cont=4)
    x = torch.randn(3, 4)
    assert torch.equal(head(x), x)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_body_shapes(activation, norm):
    body = Body(6, widths=[16, 8], activation=activation, norm=norm, dropout=0.1)
    assert body.out_dim == 8
    assert body(torch.randn(5, 6)).shape == (5, 8)


def test_body_rejects_bad_settings():
    with pytest.raises(ValueError, match="activation"):
        make_activation("tanhh")
    with pytest.raises(ValueError, match="norm"):
        Body(3, norm="group")
    with pytest.raises(ValueError, match="dropout"):
        Body(3, dropout=1.5)


@pytest.mark.parametrize(
    "objective,n_out,expected", [("binary", None, 1), ("binary", 1, 1), ("multiclass", 4, 4), ("regression", 2, 2)]
)
def test_tail_outputs(objective, n_out, expected):
    tail = Tail(8, objective, n_out)
    assert tail(torch.randn(3, 8)).shape == (3, expected)


def test_tail_rejects_inconsistent_outputs():
    with pytest.raises(ValueError, match="objective"):
        Tail(8, "ranking", 2)
    with pytest.raises(ValueError, match="binary"):
        Tail(8, "binary", 3)
    with pytest.raises(ValueError, match="multiclass"):
        Tail(8, "multiclass", 1)
    with pytest.raises(ValueError, match="regression"):
        Tail(8, "regression", None)
