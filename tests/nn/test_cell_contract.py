"""The Cell contract, whole: any number of state tensors on every engine, and what `step` returns.

Cells of one, two and three state tensors (built-in and one's own, the three-state one written
here) on every engine against `loop` to 1e-5 in fp32 (outputs, final states, gradients), with
and without lengths, bidirectional and stacked; the gradient-through-time view of each.
"""

import re

import pytest
import torch
from conftest import assert_same_run, states

from seqmodels.errors import UserError
from seqmodels.nn import GRU, LSTM, RNN, Cell, LSTMCell, PeepholeLSTMCell, Recurrent, RNNCell
from seqmodels.nn.auto import choose_engine
from seqmodels.nn.gradflow import state_gradient_norms

B, T, I, H = 3, 5, 4, 6  # noqa: E741


class MinimalRNNCell(Cell):
    """One state tensor: h_t = u * h_{t-1} + (1 - u) * tanh(z) (Chen 2017)."""

    gate_names = ("u", "z")

    def step(self, gates, h):
        u, z = gates.chunk(2, -1)
        u = torch.sigmoid(u)
        return u * h + (1 - u) * torch.tanh(z)


class TupleRNNCell(MinimalRNNCell):
    """The same cell returning its one state as a 1-tuple, the form Keras users write."""

    def step(self, gates, h):
        return (super().step(gates, h),)


class AveragedLSTMCell(Cell):
    """Three state tensors: an LSTM that also keeps m, a running average of its cell state,
    and reads it into h."""

    gate_names = ("i", "f", "g", "o")
    state_names = ("h", "c", "m")

    def step(self, gates, state):
        _, c, m = state
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        m = 0.5 * m + 0.5 * c
        return torch.sigmoid(o) * torch.tanh(c + m), c, m


CELLS = [MinimalRNNCell, TupleRNNCell, RNNCell, PeepholeLSTMCell, LSTMCell, AveragedLSTMCell]


def initial_state(layer, LD):
    s0 = tuple(torch.randn(LD, B, H) for _ in layer.cells[0].state_names)
    return s0 if len(s0) > 1 else s0[0]


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("engine", ["fused", "auto", "native"])
@pytest.mark.parametrize("num_layers,bi", [(1, False), (2, True)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_every_state_count_matches_loop(cls, engine, num_layers, bi, with_lengths):
    torch.manual_seed(num_layers + 3 * bi)
    ref = Recurrent(cls, I, H, num_layers=num_layers, bidirectional=bi, engine="loop")
    if engine == "native" and ref.native_kernel() is None:
        with pytest.raises(UserError, match=rf"engine='native' is not available.*{cls.__name__}"):
            Recurrent(cls, I, H, num_layers=num_layers, bidirectional=bi, engine="native")
        return
    other = Recurrent(cls, I, H, num_layers=num_layers, bidirectional=bi, engine=engine)
    other.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    lengths = torch.tensor([5, 1, 3]) if with_lengths else None
    s0 = initial_state(ref, num_layers * (1 + bi))
    assert_same_run(other, ref, x, s0, lengths)
    # the final state has one (L*D, B, H) tensor per state name, a bare tensor for one
    _, s = other(x, lengths=lengths)
    assert len(states(s)) == len(ref.cells[0].state_names)
    assert all(t.shape == (num_layers * (1 + bi), B, H) for t in states(s))


def test_three_states_with_lengths_keep_each_sequences_own_last_step():
    """The final (h, c, m) of a padded sequence is the one after its last valid step."""
    torch.manual_seed(0)
    for engine in ("loop", "fused"):
        layer = Recurrent(AveragedLSTMCell, I, H, bidirectional=False, engine=engine)
        x = torch.randn(B, T, I)
        _, (h, c, m) = layer(x, lengths=torch.tensor([5, 2, 4]))
        _, (h1, c1, m1) = layer(x[1:2, :2])
        for a, b in ((h, h1), (c, c1), (m, m1)):
            torch.testing.assert_close(a[:, 1:2], b, atol=1e-6, rtol=0)


def retained_state_grads(layer, x, lengths):
    """||dL/dh_t|| per step, mean over the batch's valid steps, for a one-layer forward
    layer: the cell stepped by hand, each h_t's total gradient kept by retain_grad."""
    cell = layer.cells[0]
    state = cell.init_state(B)
    hs = []
    for t, x_t in enumerate(x.unbind(1)):
        _, new = cell(x_t, state)
        keep = (t < lengths)[:, None]
        state = tuple(
            torch.where(keep, n, o) for n, o in zip(states(new), states(state), strict=True)
        )
        state = state if len(state) > 1 else state[0]
        h = states(state)[0]
        h.retain_grad()
        hs.append(h)
    out = torch.where(
        (torch.arange(T)[None, :, None] < lengths[:, None, None]), torch.stack(hs, 1), 0
    )
    (out.square().sum() + sum(s.square().sum() for s in states(state))).backward()
    norms = torch.stack([h.grad.norm(dim=-1) for h in hs], 1)  # (B, T)
    valid = torch.arange(T)[None, :] < lengths[:, None]
    return (norms * valid).sum(0) / valid.sum(0)


@pytest.mark.parametrize(
    "cls", [MinimalRNNCell, LSTMCell, AveragedLSTMCell], ids=lambda c: c.__name__
)
@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_gradient_through_time_of_every_state_count(cls, engine):
    torch.manual_seed(0)
    layer = Recurrent(cls, I, H, engine=engine)
    x, lengths = torch.randn(B, T, I), torch.tensor([5, 2, 4])

    def loss():
        out, s = layer(x, lengths=lengths)
        return out.square().sum() + sum(t.square().sum() for t in states(s))

    got = state_gradient_norms(layer, loss, lengths)
    assert got.shape == (1, T) and layer.engine == engine
    torch.testing.assert_close(got[0], retained_state_grads(layer, x, lengths), atol=1e-5, rtol=0)
    bi = Recurrent(cls, I, H, num_layers=2, bidirectional=True, engine=engine)
    norms = state_gradient_norms(bi, lambda: bi(x, lengths=lengths)[0].square().sum(), lengths)
    assert norms.shape == (2, T) and torch.isfinite(norms).all()


# -- what step returns, checked once per call -------------------------------------------------
def test_a_one_state_cell_may_return_a_1_tuple():
    """(h,) from step is h: the cell gives a bare tensor, every engine matches a bare step."""
    torch.manual_seed(0)
    out, h = TupleRNNCell(I, H)(torch.randn(B, I))
    assert isinstance(h, torch.Tensor) and h.shape == (B, H) and out is h
    x = torch.randn(B, T, I)
    for engine in ("loop", "fused"):
        layer = Recurrent(TupleRNNCell, I, H, engine=engine)
        ref = Recurrent(MinimalRNNCell, I, H, engine="loop")
        ref.load_state_dict(layer.state_dict())
        for lengths in (None, torch.tensor([5, 1, 3])):
            assert_same_run(layer, ref, x, None, lengths)
            assert isinstance(layer(x, lengths=lengths)[1], torch.Tensor)


class WideState(MinimalRNNCell):
    def step(self, gates, h):
        return torch.cat((h, h), -1)


class TwoForOne(MinimalRNNCell):
    def step(self, gates, h):
        return h, h


class TwoForThree(AveragedLSTMCell):
    def step(self, gates, state):
        return super().step(gates, state)[:2]


class ListForThree(AveragedLSTMCell):
    def step(self, gates, state):
        return list(super().step(gates, state))


class BareForThree(AveragedLSTMCell):
    def step(self, gates, state):
        return super().step(gates, state)[0]


class NotATensor(MinimalRNNCell):
    def step(self, gates, h):
        return h.tolist()


BROKEN = [
    (
        WideState,
        r"WideState.step returned a tensor shaped \(3, 12\); its state_names \('h',\) "
        r"want h, one tensor \(or a 1-tuple \(h,\)\) shaped \(batch, hidden_size\)=\(3, 6\)$",
    ),
    (
        TwoForOne,
        r"TwoForOne.step returned a tuple of 2 tensors shaped \(3, 6\), \(3, 6\); "
        r"its state_names \('h',\) want h",
    ),
    (
        TwoForThree,
        r"TwoForThree.step returned a tuple of 2 tensors shaped \(3, 6\), \(3, 6\); "
        r"its state_names \('h', 'c', 'm'\) want a tuple of 3 tensors, each "
        r"\(batch, hidden_size\)=\(3, 6\)$",
    ),
    (ListForThree, r"ListForThree.step returned a list of 3 tensors .* want a tuple of 3"),
    (BareForThree, r"BareForThree.step returned a tensor shaped \(3, 6\); .* want a tuple of 3"),
    (NotATensor, r"NotATensor.step returned a list of 3 \(list, list, list\); .* want h"),
]


@pytest.mark.parametrize("cls,message", BROKEN, ids=lambda c: getattr(c, "__name__", ""))
@pytest.mark.parametrize("engine", ["loop", "fused", "auto"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_a_step_that_breaks_the_contract_is_one_line(cls, message, engine, with_lengths):
    layer = Recurrent(cls, I, H, bidirectional=True, engine=engine)
    lengths = torch.tensor([5, 1, 3]) if with_lengths else None
    with pytest.raises(UserError, match=message) as e:
        layer(torch.randn(B, T, I), lengths=lengths)
    assert "\n" not in str(e.value)


def test_the_step_result_is_checked_on_the_first_step_only(monkeypatch):
    import seqmodels.nn.cells as cells

    calls = []
    real = cells.check_step_result
    monkeypatch.setattr(cells, "check_step_result", lambda *a: calls.append(1) or real(*a))
    for module in ("seqmodels.nn.engines", "seqmodels.nn.fused"):
        monkeypatch.setattr(f"{module}.check_step_result", cells.check_step_result)
    for engine in ("loop", "fused"):
        calls.clear()
        Recurrent(AveragedLSTMCell, I, H, num_layers=2, bidirectional=True, engine=engine)(
            torch.randn(B, T, I), lengths=torch.tensor([5, 1, 3])
        )
        assert len(calls) == 4  # once per (layer, direction), not per step


# -- which engine runs a cell: one record ----------------------------------------------------
class ForwardOnlyCell(Cell):
    def forward(self, x, state=None):
        h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        h = torch.tanh(self.i2h(torch.cat((x, h), -1)))
        return h, h


@pytest.mark.parametrize(
    "make,kernel,recurrence,fused,native",
    [
        (lambda: LSTM(I, H, bidirectional=True), "lstm", "lstm", None, None),
        (lambda: GRU(I, H), "gru", "step", None, None),
        (lambda: GRU(I, H, reset_after=False), None, "cho_gru", None, "no kernel"),
        (lambda: RNN(I, H, nonlinearity="relu"), "rnn_relu", "step", None, None),
        (lambda: RNN(I, H, nonlinearity="swish"), None, "step", None, "no kernel"),
        (lambda: Recurrent(AveragedLSTMCell, I, H), None, "step", None, "no kernel"),
        (lambda: Recurrent(ForwardOnlyCell, I, H), None, None, "neither step", "no kernel"),
    ],
)
def test_one_record_says_which_engine_runs_a_layer(make, kernel, recurrence, fused, native):
    layer = make()
    support = layer.engine_support
    assert support.kernel == kernel == layer.native_kernel()
    assert set(support.recurrences) == {recurrence}
    for got, want in ((support.fused, fused), (support.native, native)):
        assert got is None if want is None else want in got
    x = torch.randn(2, 5, I)
    for engine in ("fused", "native"):
        refusal = support.refusal(engine)
        if refusal is None:
            layer.engine = engine
            layer(x)
        elif engine == "native":  # refused when set, with the record's reason
            with pytest.raises(UserError, match=re.escape(refusal)):
                layer.engine = engine
        else:  # refused when run
            layer.engine = engine
            with pytest.raises(UserError, match=re.escape(refusal)):
                layer(x)
    # auto picks among what the record allows: fused where it can, loop otherwise
    layer.engine = "auto"
    want = "native" if kernel else "fused" if fused is None else "loop"
    assert choose_engine(layer, x, None) == want
