"""Cells against their formulas written out here, gradcheck, init_state, i2o, bad arguments."""

import pytest
import torch
import torch.nn.functional as F

from seqmodels.nn import GRUCell, LSTMCell, RNNCell

B, I, H, O = 3, 4, 5, 2  # noqa: E741


def split(cell):
    """torch-style (W_ih, W_hh, b) from a cell's single i2h."""
    w, b = cell.i2h.weight, cell.i2h.bias
    return w[:, :I], w[:, I:], b


@pytest.mark.parametrize("nl,act", [("tanh", torch.tanh), ("relu", torch.relu), ("swish", F.silu)])
def test_rnn_cell_formula(nl, act):
    cell = RNNCell(I, H, nonlinearity=nl)
    x, h = torch.randn(B, I), torch.randn(B, H)
    w_ih, w_hh, b = split(cell)
    out, h1 = cell(x, h)
    torch.testing.assert_close(h1, act(x @ w_ih.T + h @ w_hh.T + b))
    assert out is h1  # without i2o the output is h_t


def test_lstm_cell_formula_gate_order_ifgo():
    cell = LSTMCell(I, H)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    w_ih, w_hh, b = split(cell)
    pre = x @ w_ih.T + h @ w_hh.T + b
    i, f, g, o = pre[:, :H], pre[:, H : 2 * H], pre[:, 2 * H : 3 * H], pre[:, 3 * H :]
    c_want = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_want = torch.sigmoid(o) * torch.tanh(c_want)
    out, (h1, c1) = cell(x, (h, c))
    torch.testing.assert_close(c1, c_want)
    torch.testing.assert_close(h1, h_want)
    torch.testing.assert_close(out, h_want)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_cell_formula(reset_after):
    cell = GRUCell(I, H, reset_after=reset_after)
    x, h = torch.randn(B, I), torch.randn(B, H)
    w_ih, w_hh, b = split(cell)
    r = torch.sigmoid(x @ w_ih[:H].T + h @ w_hh[:H].T + b[:H])
    z = torch.sigmoid(x @ w_ih[H : 2 * H].T + h @ w_hh[H : 2 * H].T + b[H : 2 * H])
    if reset_after:  # r scales the hidden product and its own bias b_hn
        n = torch.tanh(x @ w_ih[2 * H :].T + b[2 * H :] + r * (h @ w_hh[2 * H :].T + cell.bias_hn))
    else:  # Cho et al.: r scales h before the product
        assert cell.bias_hn is None
        n = torch.tanh(x @ w_ih[2 * H :].T + (r * h) @ w_hh[2 * H :].T + b[2 * H :])
    _, h1 = cell(x, h)
    torch.testing.assert_close(h1, (1 - z) * n + z * h)


@pytest.mark.parametrize(
    "cell",
    [RNNCell(I, H, output_size=O), LSTMCell(I, H, output_size=O), GRUCell(I, H, output_size=O)],
    ids=["rnn", "lstm", "gru"],
)
def test_i2o_reads_x_and_new_h(cell):
    x = torch.randn(B, I)
    out, state = cell(x)  # state=None: starts from zeros
    h = state[0] if isinstance(state, tuple) else state
    assert out.shape == (B, O)
    torch.testing.assert_close(out, cell.i2o(torch.cat((x, h), 1)))
    assert cell.i2h.in_features == I + H


def test_init_state_shapes_and_state_none_is_zeros():
    lstm = LSTMCell(I, H)
    h, c = lstm.init_state(B, dtype=torch.float64)
    assert h.shape == c.shape == (B, H) and h.dtype == torch.float64 and not h.any()
    x = torch.randn(B, I)
    torch.testing.assert_close(lstm(x)[0], lstm(x, lstm.init_state(B))[0])
    assert RNNCell(I, H).init_state(2).shape == (2, H)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RNNCell(I, H, output_size=O, nonlinearity="tanh"),
        lambda: RNNCell(I, H, nonlinearity="swish"),
        lambda: LSTMCell(I, H, output_size=O),
        lambda: GRUCell(I, H, output_size=O, reset_after=True),
        lambda: GRUCell(I, H, reset_after=False),
    ],
    ids=["rnn_tanh_i2o", "rnn_swish", "lstm_i2o", "gru_after_i2o", "gru_before"],
)
def test_gradcheck_float64(make):
    torch.manual_seed(0)
    cell = make().double()
    x = torch.randn(2, I, dtype=torch.float64, requires_grad=True)
    state = cell.init_state(2)
    if isinstance(state, tuple):
        h = torch.randn_like(state[0], requires_grad=True)
        c = torch.randn_like(state[1], requires_grad=True)

        def f(x, h, c, *params):
            out, (h1, c1) = cell(x, (h, c))
            return out, h1, c1

        inputs = (x, h, c)
    else:
        h = torch.randn_like(state, requires_grad=True)

        def f(x, h, *params):
            out, h1 = cell(x, h)
            return out, h1

        inputs = (x, h)
    # parameters are passed so gradcheck checks their gradients too
    assert torch.autograd.gradcheck(f, inputs + tuple(cell.parameters()))


def test_bad_cell_arguments():
    with pytest.raises(
        ValueError, match="nonlinearity must be one of tanh, relu, swish, got 'gelu'"
    ):
        RNNCell(I, H, nonlinearity="gelu")
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0"):
        LSTMCell(I, 0)
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        GRUCell(-1, H)
    with pytest.raises(ValueError, match=r"LSTMCell: bias must be True or False, got 8 .*keyword"):
        LSTMCell(I, H, 8)  # output_size third, as before torch's order


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "ours,theirs,extra",
    [
        (LSTMCell, torch.nn.LSTMCell, ()),
        (GRUCell, torch.nn.GRUCell, ()),
        (RNNCell, torch.nn.RNNCell, ("relu",)),
    ],
    ids=["lstm", "gru", "rnn"],
)
def test_torch_positional_order(ours, theirs, extra, bias):
    """cls(input_size, hidden_size, bias[, nonlinearity]) as torch.nn's cells, same numbers."""
    torch.manual_seed(0)
    cell, ref = ours(I, H, bias, *extra), theirs(I, H, bias, *extra)
    assert (cell.i2h.bias is not None) == bias and cell.i2o is None
    cell.load_torch_parameters(ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    x = torch.randn(B, I)
    state = cell.init_state(B) if ours is not LSTMCell else (torch.randn(B, H), torch.randn(B, H))
    _, got = cell(x, state)
    want = ref(x, state)
    for a, b in zip(
        got if ours is LSTMCell else (got,), want if ours is LSTMCell else (want,), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
