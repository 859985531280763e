"""The public cell API: a cell of one's own in a Recurrent layer, on every engine that runs it.

The literature cells (seqmodels.nn.literature) against their formulas stepped in a plain
loop written out here; every engine against `loop` to 1e-5 on outputs, final states and
gradients (lengths, bidirectional, stacked); a ten-line cell written as a user would; the
contract's one-line errors; the built-in layers as Recurrent over the built-in cells.
"""

import functools

import pytest
import torch
from conftest import assert_same_run, states
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqmodels.errors import UserError
from seqmodels.nn import (
    LSTM,
    Cell,
    CIFGLSTMCell,
    GRUCell,
    IndRNNCell,
    LSTMCell,
    PeepholeLSTMCell,
    Recurrent,
    RNNCell,
)
from seqmodels.nn.auto import choose_engine
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.nn.init import chrono_, forget_gate_bias_

B, T, I, H = 3, 5, 4, 6  # noqa: E741


# -- the literature cells, written out ------------------------------------------------------
def peephole_loop(cell, xs, h, c):
    w, b = cell.i2h.weight, cell.i2h.bias
    p_i, p_f, p_o = cell.peephole
    out = []
    for x in xs.unbind(1):
        z = torch.cat((x, h), 1) @ w.T + b
        zi, zf, zg, zo = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        i, f = torch.sigmoid(zi + p_i * c), torch.sigmoid(zf + p_f * c)
        c = f * c + i * torch.tanh(zg)
        h = torch.sigmoid(zo + p_o * c) * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1), (h, c)


def indrnn_loop(cell, xs, h):
    w, b, u = cell.i2h.weight, cell.i2h.bias, cell.recurrent_weight
    out = []
    for x in xs.unbind(1):
        h = torch.relu(x @ w.T + b + u * h)
        out.append(h)
    return torch.stack(out, 1), h


def cifg_loop(cell, xs, h, c):
    w, b = cell.i2h.weight, cell.i2h.bias
    out = []
    for x in xs.unbind(1):
        z = torch.cat((x, h), 1) @ w.T + b
        f, g, o = torch.sigmoid(z[:, :H]), torch.tanh(z[:, H : 2 * H]), torch.sigmoid(z[:, 2 * H :])
        c = f * c + (1 - f) * g
        h = o * torch.tanh(c)
        out.append(h)
    return torch.stack(out, 1), (h, c)


WRITTEN_OUT = {PeepholeLSTMCell: peephole_loop, IndRNNCell: indrnn_loop, CIFGLSTMCell: cifg_loop}


@pytest.mark.parametrize("engine", ["loop", "fused"])
@pytest.mark.parametrize("cls", list(WRITTEN_OUT), ids=lambda c: c.__name__)
def test_literature_cells_against_their_formulas(cls, engine):
    torch.manual_seed(0)
    layer = Recurrent(cls, I, H, engine=engine)
    cell = layer.cells[0]
    x = torch.randn(B, T, I)
    s0 = tuple(torch.randn(B, H) for _ in cell.state_names)
    out, s = layer(x, tuple(s[None] for s in s0) if len(s0) > 1 else s0[0][None])
    want_out, want_s = WRITTEN_OUT[cls](cell, x, *s0)
    torch.testing.assert_close(out, want_out, atol=1e-5, rtol=0)
    for a, b in zip(states(s), states(want_s), strict=True):
        torch.testing.assert_close(a[0], b, atol=1e-5, rtol=0)


# -- a cell written as a user would ---------------------------------------------------------
class MinimalRNNCell(Cell):
    """A user's cell: one gate u, h_t = u * h_{t-1} + (1 - u) * tanh(x-part) (Chen 2017)."""

    gate_names = ("u", "z")

    def step(self, gates, h):
        u, z = gates.chunk(2, -1)
        u = torch.sigmoid(u)
        return u * h + (1 - u) * torch.tanh(z)


class ForwardOnlyCell(Cell):
    """A cell that overrides forward only: the loop engine runs it, the fused one cannot."""

    def forward(self, x, state=None):
        h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        h = torch.tanh(self.i2h(torch.cat((x, h), -1)))
        return h, h


USER_CELLS = [PeepholeLSTMCell, IndRNNCell, CIFGLSTMCell, MinimalRNNCell]


@pytest.mark.parametrize("cls", USER_CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("num_layers,bi", [(1, False), (2, True)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_runs_any_cell_like_loop(cls, num_layers, bi, with_lengths):
    torch.manual_seed(num_layers + 3 * bi)
    ref = Recurrent(cls, I, H, num_layers=num_layers, bidirectional=bi, engine="loop")
    other = Recurrent(cls, I, H, num_layers=num_layers, bidirectional=bi, engine="fused")
    other.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    LD = num_layers * (1 + bi)
    names = ref.cells[0].state_names
    s0 = tuple(torch.randn(LD, B, H) for _ in names)
    lengths = torch.tensor([5, 1, 3]) if with_lengths else None
    assert_same_run(other, ref, x, s0 if len(names) > 1 else s0[0], lengths)


@pytest.mark.parametrize("cls", USER_CELLS, ids=lambda c: c.__name__)
def test_auto_runs_a_users_cell_on_fused(cls):
    x = torch.randn(2, 5, I)
    assert choose_engine(Recurrent(cls, I, H), x, None) == "fused"
    assert choose_engine(Recurrent(cls, I, H), x[:, :1], None) == "loop"  # one step


def test_a_cell_without_step_runs_on_loop_only():
    layer = Recurrent(ForwardOnlyCell, I, H)
    x = torch.randn(2, 5, I)
    assert choose_engine(layer, x, None) == "loop"
    out, h = layer(x)
    assert out.shape == (2, 5, H) and h.shape == (1, 2, H)
    layer.engine = "fused"
    with pytest.raises(UserError, match=r"engine='fused' cannot run ForwardOnlyCell.*step\(\)"):
        layer(x)
    with pytest.raises(UserError, match=r"engine='native' is not available for Recurrent\("):
        layer.engine = "native"


def test_recurrent_over_builtin_cells_is_the_builtin_layer():
    """LSTM is Recurrent(LSTMCell): same parameters, same numbers, torch's kernel and interop."""
    torch.manual_seed(0)
    lstm = LSTM(I, H, num_layers=2, bidirectional=True)
    layer = Recurrent(LSTMCell, I, H, num_layers=2, bidirectional=True)
    layer.load_state_dict(lstm.state_dict())
    assert layer.native_kernel() == "lstm"
    x = torch.randn(B, T, I)
    for engine in ("loop", "fused", "native"):
        lstm.engine = layer.engine = engine
        torch.testing.assert_close(layer(x)[0], lstm(x)[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.to_torch()(x)[0], lstm(x)[0], atol=1e-5, rtol=0)
    gru = Recurrent(functools.partial(GRUCell, reset_after=False), I, H)
    assert gru.native_kernel() is None and "GRUCell(reset_after=False)" in repr(gru)


def test_a_changed_builtin_cell_loses_the_native_kernel():
    class Renamed(LSTMCell):  # the same computation: keeps torch's kernel
        pass

    class Changed(LSTMCell):  # another step: torch's kernel would compute the wrong thing
        def step(self, gates, state):
            h, c = super().step(gates, state)
            return h * 0.5, c

    assert Recurrent(Renamed, I, H).native_kernel() == "lstm"
    assert Recurrent(Changed, I, H).native_kernel() is None
    assert Recurrent(PeepholeLSTMCell, I, H).native_kernel() is None  # extra parameters
    with pytest.raises(UserError, match="not available for Recurrent\\(Changed\\)"):
        Recurrent(Changed, I, H, engine="native")
    x = torch.randn(2, 5, I)
    ref = Recurrent(Changed, I, H, engine="loop")
    fused = Recurrent(Changed, I, H, engine="fused")
    fused.load_state_dict(ref.state_dict())
    torch.testing.assert_close(fused(x)[0], ref(x)[0], atol=1e-6, rtol=0)


def test_packed_sequence_and_state_carry_with_a_users_cell():
    torch.manual_seed(0)
    layer = Recurrent(PeepholeLSTMCell, I, H, engine="fused")
    x = torch.randn(B, T, I)
    lengths = torch.tensor([5, 2, 4])
    out, (h, c) = layer(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_p, (h_p, c_p) = layer(packed)
    torch.testing.assert_close(h_p, h, atol=1e-6, rtol=0)
    torch.testing.assert_close(c_p, c, atol=1e-6, rtol=0)
    with torch.no_grad():  # two calls with the state carried == one call
        o1, s1 = layer(x[:, :2])
        o2, s2 = layer(x[:, 2:], s1)
        o, s = layer(x)
    torch.testing.assert_close(torch.cat((o1, o2), 1), o, atol=1e-6, rtol=0)
    torch.testing.assert_close(s2[1], s[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_gradient_through_time_of_a_users_cell(engine):
    layer = Recurrent(CIFGLSTMCell, I, H, bidirectional=True, engine=engine)
    x = torch.randn(B, T, I)
    norms = state_gradient_norms(layer, lambda: layer(x)[0].square().sum())
    assert norms.shape == (2, T) and torch.isfinite(norms).all() and layer.engine == engine


def test_inits_set_the_gates_a_cell_names():
    """forget_gate_bias_ and chrono_ find every cell with an "f" gate, whatever its class."""
    layer = Recurrent(CIFGLSTMCell, I, H, num_layers=2)
    forget_gate_bias_(layer, 1.0)
    for cell in layer.cells:  # gates f, g, o: f is the first block
        assert torch.equal(cell.i2h.bias[:H], torch.ones(H))
    peep = Recurrent(PeepholeLSTMCell, I, H)
    chrono_(peep, max_steps=50)
    b = peep.cells[0].i2h.bias
    torch.testing.assert_close(b[:H], -b[H : 2 * H])  # i = -log(u), f = log(u)
    chrono_(layer, max_steps=50)  # no input gate: f alone
    assert (layer.cells[0].i2h.bias[:H] >= 0).all()
    with pytest.raises(UserError, match="holds no cell with a forget gate"):
        forget_gate_bias_(Recurrent(IndRNNCell, I, H))


def test_contract_errors_are_one_line():
    with pytest.raises(UserError, match=r"cell=Linear built a Linear, not a seqmodels.nn.Cell"):
        Recurrent(nn.Linear, I, H)
    with pytest.raises(UserError, match="cell must be a seqmodels.nn.Cell subclass"):
        Recurrent("LSTMCell", I, H)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="has an i2o head"):
        Recurrent(functools.partial(LSTMCell, output_size=3), I, H)

    class Resized(Cell):
        def __init__(self, input_size, hidden_size, bias=True):
            super().__init__(input_size, 2 * hidden_size, bias=bias)

    with pytest.raises(UserError, match=r"asked for input_size=4, hidden_size=6, it built"):
        Recurrent(Resized, I, H)

    class NoH(Cell):
        state_names = ("c",)

    with pytest.raises(TypeError, match="state_names must start with 'h'"):
        NoH(I, H)


def test_state_errors_name_the_cells_state():
    layer = Recurrent(PeepholeLSTMCell, I, H)
    x = torch.randn(2, 5, I)
    with pytest.raises(UserError, match=r"expected a tuple \(h, c\) of tensors"):
        layer(x, torch.zeros(1, 2, H))
    with pytest.raises(UserError, match=r"expected shape .*=\(1, 2, 6\), got \(1, 3, 6\)"):
        Recurrent(IndRNNCell, I, H)(x, torch.zeros(1, 3, H))


class StepLSTMCell(LSTMCell):
    """The LSTM's step as a cell of one's own: the fused engine runs it on the recurrence
    for any cell, not the built-in LSTM's hand-written one (as bench_nn does)."""

    def step(self, gates, state):
        return super().step(gates, state)


def test_the_lstm_on_the_fused_engines_two_recurrences():
    torch.manual_seed(0)
    ref = LSTM(I, H, num_layers=2, bidirectional=True, engine="loop")
    s0 = (torch.randn(4, B, H), torch.randn(4, B, H))
    x = torch.randn(B, T, I)
    hand = LSTM(I, H, num_layers=2, bidirectional=True, engine="fused")
    anycell = Recurrent(StepLSTMCell, I, H, num_layers=2, bidirectional=True, engine="fused")
    assert anycell.native_kernel() is None and hand.native_kernel() == "lstm"
    for other in (hand, anycell):
        other.load_state_dict(ref.state_dict())
        for lengths in (None, torch.tensor([5, 1, 3])):
            assert_same_run(other, ref, x, s0, lengths)


@pytest.mark.parametrize("cls", [RNNCell, GRUCell, LSTMCell])
def test_builtin_cells_are_cells(cls):
    cell = cls(I, H)
    assert isinstance(cell, Cell) and cell.num_gates * H == cell.i2h.out_features
    assert cell.state_size == (2 if cls is LSTMCell else 1)


@pytest.mark.parametrize(
    "cls", [PeepholeLSTMCell, GRUCell, MinimalRNNCell], ids=lambda c: c.__name__
)
def test_fused_gradients_from_the_final_state_alone(cls):
    """A loss on h_n only (a classifier's pooling=last): no gradient reaches the outputs,
    padded steps add nothing; the weight gradient over all steps still equals loop's."""
    torch.manual_seed(0)
    ref = Recurrent(cls, I, H, bidirectional=True, engine="loop")
    other = Recurrent(cls, I, H, bidirectional=True, engine="fused")
    other.load_state_dict(ref.state_dict())
    x, lengths = torch.randn(B, T, I), torch.tensor([5, 1, 3])
    for layer in (ref, other):
        layer.zero_grad()
        states(layer(x, lengths=lengths)[1])[0].square().sum().backward()
    for (name, p), q in zip(ref.named_parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=0, msg=name)


def test_fused_refuses_a_backward_after_its_outputs_changed_in_place():
    layer = Recurrent(MinimalRNNCell, I, H, engine="fused")
    out, _ = layer(torch.randn(B, T, I))
    out.mul_(2)  # the recurrent weight's gradient needs the old values
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()
