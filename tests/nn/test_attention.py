"""Attention masks padding (weights sum to 1 over valid positions only); the decoder steps any
seqmodels.nn cell, and teacher forcing computes what stepping token by token computes."""

from __future__ import annotations

import functools

import pytest
import torch

from seqmodels.nn import (
    AdditiveAttention,
    AttentionDecoder,
    GRUCell,
    LSTMCell,
    MultiplicativeAttention,
    PeepholeLSTMCell,
    RNNCell,
)

KINDS = [functools.partial(AdditiveAttention, attention_size=12), MultiplicativeAttention]


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_over_valid_positions_only(kind):
    torch.manual_seed(0)
    attention = kind(query_size=6, key_size=10)
    keys = torch.randn(3, 5, 10)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    query = torch.randn(3, 6)
    context, weights = attention(query, keys, attention.prepare(keys), mask)
    assert weights.shape == (3, 5) and context.shape == (3, 10)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    assert torch.allclose(weights[2, 0], torch.tensor(1.0))  # one valid position: all on it
    # What sits in the padded positions changes nothing.
    noisy = keys.clone()
    noisy[~mask] = 1e3
    context2, weights2 = attention(query, noisy, attention.prepare(noisy), mask)
    assert torch.allclose(weights, weights2) and torch.allclose(context, context2)


@pytest.mark.parametrize(
    "cell",
    [
        LSTMCell,
        GRUCell,
        RNNCell,
        PeepholeLSTMCell,  # a cell from the literature, a user's kind
        functools.partial(GRUCell, reset_after=False),
    ],
    ids=["lstm", "gru", "rnn", "peephole", "gru_cho"],
)
@pytest.mark.parametrize("feeding", [True, False])
def test_teacher_forcing_equals_stepping_for_any_cell(cell, feeding):
    torch.manual_seed(0)
    decoder = AttentionDecoder(
        vocab_size=9,
        embedding_dim=5,
        cell=cell,
        hidden_size=7,
        key_size=6,
        attention=MultiplicativeAttention,
        input_feeding=feeding,
    ).eval()
    keys = torch.randn(2, 4, 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    inputs = torch.randint(1, 9, (2, 5))
    logits, weights = decoder(inputs, decoder.start(keys, mask))
    assert logits.shape == (2, 5, 9) and weights.shape == (2, 5, 4)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 5))
    state = decoder.start(keys, mask)
    for t in range(5):
        step_logits, state, w = decoder.step(inputs[:, t], state)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-6)
        assert torch.allclose(w, weights[:, t], atol=1e-6)


def test_select_follows_rows():
    torch.manual_seed(0)
    decoder = AttentionDecoder(9, 5, LSTMCell, 7, 6, AdditiveAttention)
    state = decoder.start(torch.randn(3, 4, 6), torch.ones(3, 4, dtype=torch.bool))
    picked = decoder.select(state, torch.tensor([2, 2, 0]))
    assert torch.equal(picked.cell[0][1], state.cell[0][2])  # (h, c): h of row 2
    assert torch.equal(picked.keys[2], state.keys[0])


def test_padding_idx_is_a_parameter():
    decoder = AttentionDecoder(9, 5, LSTMCell, 7, 6, AdditiveAttention, padding_idx=3)
    assert decoder.embedding.padding_idx == 3 and not decoder.embedding.weight[3].any()
    assert AttentionDecoder(9, 5, LSTMCell, 7, 6, AdditiveAttention).embedding.padding_idx == 0


def test_batch_size_and_device_come_from_the_state():
    decoder = AttentionDecoder(9, 5, GRUCell, 7, 6, MultiplicativeAttention)
    state = decoder.start(torch.randn(3, 4, 6), torch.ones(3, 4, dtype=torch.bool))
    assert decoder.batch_size(state) == 3 and decoder.device(state) == torch.device("cpu")
    assert decoder.batch_size(decoder.select(state, torch.tensor([0, 0, 1, 1, 2]))) == 5
