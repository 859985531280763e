"""Attention masks padding (weights sum to 1 over valid positions only); the decoder steps any
seqmodels.nn cell, and teacher forcing computes what stepping token by token computes."""

from __future__ import annotations

import functools

import pytest
import torch

from seqmodels.nn import (
    AdditiveAttention,
    Attention,
    AttentionDecoder,
    GRUCell,
    LSTMCell,
    MultiplicativeAttention,
    PeepholeLSTMCell,
    RNNCell,
)
from seqmodels.nn.recurrent import ENGINES

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


class DotAttention(Attention):
    """A user's attention that defines only `score`: U steps go through score_steps' default."""

    def score(self, query, prepared):
        return torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("kind", [*KINDS, DotAttention], ids=["additive", "multiplicative", "dot"])
def test_all_steps_at_once_equal_step_by_step(kind):
    torch.manual_seed(0)
    attention = kind(query_size=6, key_size=6)
    keys = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    queries = torch.randn(3, 4, 6)
    prepared = attention.prepare(keys)
    context, weights = attention(queries, keys, prepared, mask)
    assert context.shape == (3, 4, 6) and weights.shape == (3, 4, 5)
    assert (weights.masked_select(~mask.unsqueeze(1)) == 0).all()
    for u in range(4):
        c, w = attention(queries[:, u], keys, prepared, mask)
        torch.testing.assert_close(context[:, u], c, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(weights[:, u], w, atol=1e-6, rtol=1e-5)


CELLS = {
    "lstm": LSTMCell,
    "gru": GRUCell,
    "rnn": RNNCell,
    "peephole": PeepholeLSTMCell,  # a user's cell: no native kernel, the fused engine's step
}


def _decoder(cell, attention, feeding, engine="auto", dropout=0.0):
    return AttentionDecoder(
        vocab_size=11,
        embedding_dim=5,
        cell=cell,
        hidden_size=7,
        key_size=6,
        attention=attention,
        input_feeding=feeding,
        dropout=dropout,
        engine=engine,
    )


def _stepped(decoder, inputs, state):
    logits, weights = [], []
    for t in range(inputs.shape[1]):
        step_logits, state, w = decoder.step(inputs[:, t], state)
        logits.append(step_logits)
        weights.append(w)
    return torch.stack(logits, 1), torch.stack(weights, 1)


# Every engine that can run the cell (torch has no native kernel for a peephole LSTM).
RUNS = [(n, e) for n in CELLS for e in ENGINES if (n, e) != ("peephole", "native")]


@pytest.mark.parametrize("kind", KINDS, ids=["additive", "multiplicative"])
@pytest.mark.parametrize(("name", "engine"), RUNS, ids=[f"{n}-{e}" for n, e in RUNS])
@pytest.mark.parametrize("feeding", [True, False], ids=["feeding", "no_feeding"])
def test_teacher_forcing_equals_stepping_values_and_gradients(kind, name, engine, feeding):
    torch.manual_seed(0)
    decoder = _decoder(CELLS[name], kind, feeding, engine)
    keys = torch.randn(3, 6, 6)
    mask = torch.arange(6) < torch.tensor([6, 4, 1]).unsqueeze(1)
    inputs = torch.randint(1, 11, (3, 9))
    target = torch.randint(1, 11, (3, 9))

    def run(forward):
        decoder.zero_grad()
        logits, weights = forward(inputs, decoder.start(keys, mask))
        nn_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        nn_loss.backward()
        grads = {k: p.grad.clone() for k, p in decoder.named_parameters() if p.grad is not None}
        return logits.detach(), weights.detach(), grads

    logits, weights, grads = run(decoder)
    want_logits, want_weights, want_grads = run(lambda i, s: _stepped(decoder, i, s))
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, want_weights, atol=1e-5, rtol=1e-5)
    assert grads.keys() == want_grads.keys() and len(grads) > 5
    for k in grads:
        torch.testing.assert_close(grads[k], want_grads[k], atol=1e-5, rtol=1e-4, msg=k)


def test_without_input_feeding_teacher_forcing_has_no_python_step_per_token(monkeypatch):
    # The cell is never called as a module (one call per token): the layer runs it.
    decoder = _decoder(LSTMCell, MultiplicativeAttention, feeding=False, engine="fused")
    calls = []
    monkeypatch.setattr(type(decoder.cell), "forward", lambda *a: calls.append(a))
    keys, mask = torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool)
    decoder(torch.randint(1, 11, (2, 8)), decoder.start(keys, mask))
    assert calls == []


def test_the_unrolled_layer_changes_no_state_dict_key_and_copies_with_the_decoder():
    import copy
    import io

    fed = _decoder(LSTMCell, AdditiveAttention, feeding=True)
    unfed = _decoder(LSTMCell, AdditiveAttention, feeding=False, dropout=0.5)
    assert fed.state_dict().keys() == unfed.state_dict().keys()
    assert all(not k.startswith("_unrolled") for k, _ in unfed.named_modules())
    keys, mask = torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool)
    inputs = torch.randint(1, 11, (2, 5))
    unfed.eval()
    first, _ = unfed(inputs, unfed.start(keys, mask))
    # A copy (deepcopy, or torch.save of the whole module) runs its own cell.
    clone = copy.deepcopy(unfed)
    buffer = io.BytesIO()
    torch.save(unfed, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        with torch.no_grad():
            other.cell.i2h.weight.add_(1.0)
        changed, _ = other(inputs, other.start(keys, mask))
        assert not torch.allclose(changed, first)
    again, _ = unfed(inputs, unfed.start(keys, mask))
    torch.testing.assert_close(again, first)


def test_reorder_moves_the_hypotheses_state_and_keeps_the_sources():
    torch.manual_seed(0)
    decoder = AttentionDecoder(9, 5, LSTMCell, 7, 6, AdditiveAttention)
    keys = torch.randn(2, 4, 6).repeat_interleave(3, 0)  # 2 sources, 3 hypotheses each
    state = decoder.start(keys, torch.ones(6, 4, dtype=torch.bool))
    _, state, _ = decoder.step(torch.arange(6), state)  # rows now differ within a source
    index = torch.tensor([2, 2, 0, 4, 3, 5])  # within each source's rows
    moved, picked = decoder.reorder(state, index), decoder.select(state, index)
    assert torch.equal(moved.cell[0], picked.cell[0]) and torch.equal(moved.cell[1], picked.cell[1])
    assert torch.equal(moved.feed, picked.feed)
    assert moved.keys is state.keys and moved.mask is state.mask  # not copied
    assert torch.equal(picked.keys, moved.keys)  # and the same values as select's
