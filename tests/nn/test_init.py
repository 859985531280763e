"""seqmodels.nn.init: the LSTM gate initialisations, what they set and what they buy."""

from __future__ import annotations

import math

import pytest
import torch

from seqmodels.errors import UserError
from seqmodels.nn import GRU, LSTM, LSTMCell
from seqmodels.nn.init import chrono_, forget_gate_bias_

H = 16


def gate_biases(cell):
    i, f, g, o = cell.i2h.bias.detach().chunk(4)
    return i, f, g, o


def test_forget_gate_bias_sets_only_the_forget_rows():
    lstm = LSTM(3, H, num_layers=2, bidirectional=True)
    before = [gate_biases(c) for c in lstm.cells]
    forget_gate_bias_(lstm, 1.0)
    assert len(lstm.cells) == 4  # every layer and direction
    for cell, (i0, _, g0, o0) in zip(lstm.cells, before, strict=True):
        i, f, g, o = gate_biases(cell)
        assert torch.equal(f, torch.ones(H))
        assert torch.equal(i, i0) and torch.equal(g, g0) and torch.equal(o, o0)
    # torch.nn sees the same total forget bias
    ref = lstm.to_torch()
    total = ref.bias_ih_l0 + ref.bias_hh_l0
    assert torch.allclose(total[H : 2 * H], torch.ones(H))


def test_chrono_spreads_memory_spans_over_the_range():
    lstm = LSTM(3, 256, num_layers=2)
    chrono_(lstm, max_steps=784, generator=torch.Generator().manual_seed(0))
    for cell in lstm.cells:
        i, f, _, _ = cell.i2h.bias.detach().chunk(4)
        assert torch.equal(i, -f)
        assert f.min() >= 0 and f.max() <= math.log(783) + 1e-6
        # log(u), u uniform on [1, 783]: most units remember for hundreds of steps
        assert (f.exp() > 100).float().mean() > 0.8


def test_chrono_carries_the_gradient_across_a_long_sequence():
    """d h_T / d x_0 over 300 steps: vanished with torch's init, alive with chrono."""
    x = torch.randn(4, 300, 1, generator=torch.Generator().manual_seed(0))

    def first_step_gradient(lstm):
        x0 = x.clone().requires_grad_()
        _, (h, _) = lstm(x0)
        h.sum().backward()
        return x0.grad[:, 0].norm().item()

    for seed in range(3):
        torch.manual_seed(seed)
        default = LSTM(1, 32, engine="loop")
        chrono = chrono_(LSTM(1, 32, engine="loop"), max_steps=300)
        assert first_step_gradient(default) < 1e-12  # 0.5^300 of forgetting
        assert first_step_gradient(chrono) > 1e-5


def test_inits_refuse_what_has_no_lstm_gates():
    with pytest.raises(UserError, match="no cell with a forget gate"):
        forget_gate_bias_(GRU(3, H))
    with pytest.raises(UserError, match="bias=False"):
        chrono_(LSTM(3, H, bias=False), max_steps=10)
    with pytest.raises(UserError, match="max_steps"):
        chrono_(LSTMCell(3, H), max_steps=2)
