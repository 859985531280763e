"""Every engine against the loop engine: outputs, final states, parameter and input gradients
(fp32, 1e-5), with and without lengths, 1-3 layers, uni- and bidirectional; float64 gradcheck
of the fused engine's hand-written BPTT; auto's choice."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import assert_same_run, grads, loss_of, states

from seqmodels.errors import UserError
from seqmodels.nn import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    RNNCell,
    buffers,
    fused_gru,
    fused_lstm,
)
from seqmodels.nn import fused as fused_mod
from seqmodels.nn.auto import choose_engine
from seqmodels.nn.engines import reverse_within
from seqmodels.nn.native import kernel_problem

KINDS = {
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
    "gru_before": (GRU, {"reset_after": False}),
    "rnn_tanh": (RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, {"nonlinearity": "relu"}),
    "rnn_swish": (RNN, {"nonlinearity": "swish"}),
}
NATIVE = {"lstm", "gru", "rnn_tanh", "rnn_relu"}


# native only where torch has the formulation (the others raise: see test_layers)
ENGINE_KINDS = [("fused", k) for k in KINDS] + [("native", k) for k in KINDS if k in NATIVE]


@pytest.mark.parametrize("engine,kind", ENGINE_KINDS)
@pytest.mark.parametrize("num_layers,bi", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_engine_agrees_with_loop(kind, engine, num_layers, bi, with_lengths):
    cls, kw = KINDS[kind]
    torch.manual_seed(num_layers * 10 + bi)
    ref = cls(3, 5, num_layers=num_layers, bidirectional=bi, engine="loop", **kw)
    other = cls(3, 5, num_layers=num_layers, bidirectional=bi, engine=engine, **kw)
    other.load_state_dict(ref.state_dict())
    B, T = 4, 6
    x = torch.randn(B, T, 3)
    LD = num_layers * (1 + bi)
    h0 = torch.randn(LD, B, 5)
    s0 = (h0, torch.randn(LD, B, 5)) if cls is LSTM else h0
    lengths = torch.tensor([6, 1, 4, 3]) if with_lengths else None
    assert_same_run(other, ref, x, s0, lengths)


def test_handwritten_bptt_gradcheck_float64():
    """The built-in LSTM's and Cho et al.'s GRU's hand-written backward against finite
    differences (fused_lstm.py, fused_gru.py)."""
    torch.manual_seed(0)
    T, B, H, I = 3, 2, 3, 2  # noqa: E741
    d = dict(dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, **d)
    x, w, b = torch.randn(T, B, I, **d), torch.randn(4 * H, I + H, **d), torch.randn(4 * H, **d)
    inputs = (x, w, b, h0, torch.randn(B, H, **d))
    for last in (None, torch.tensor([2, 0])):  # every sequence ends at T-1, or its own step

        def f(*a, last=last):
            return fused_lstm.LSTMRecurrence.apply(*a, last)

        assert torch.autograd.gradcheck(f, inputs)
    gx, w_hh = torch.randn(T, B, 3 * H, **d), torch.randn(3 * H, H, **d)
    assert torch.autograd.gradcheck(fused_gru.GRURecurrence.apply, (gx, h0, w_hh))


class FusedRun(torch.nn.Module):
    """fused.run(cell, ...) as a module, so functional_call can hand it parameters."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, state, lengths):
        hs, final = fused_mod.run(self.cell, x, state, lengths)
        return (hs, *states(final))


GRADCHECK_CELLS = {
    "lstm": lambda: LSTMCell(2, 3),
    "gru": lambda: GRUCell(2, 3),
    "gru_nobias": lambda: GRUCell(2, 3, bias=False),
    "tanh": lambda: RNNCell(2, 3),
    "relu": lambda: RNNCell(2, 3, nonlinearity="relu"),
    "swish": lambda: RNNCell(2, 3, nonlinearity="swish"),
}


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("kind", list(GRADCHECK_CELLS))
def test_fused_gradcheck_float64(kind, with_lengths):
    """The fused engine's recurrence for any cell (its hidden product's weight gradient
    taken over all steps at once) against finite differences, in float64."""
    torch.manual_seed(0)
    cell = GRADCHECK_CELLS[kind]().double()
    T, B = 4, 3
    x = torch.randn(T, B, 2, dtype=torch.float64)
    if kind == "relu":  # keep pre-activations away from relu's kink at 0
        x = x + 2 * x.sign()
    state = cell.init_state(B)
    state = tuple(torch.randn_like(s) for s in states(state))
    lengths = torch.tensor([4, 1, 3]) if with_lengths else None
    run = FusedRun(cell)
    names = [n for n, _ in run.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in run.named_parameters()]
    inputs = [x.requires_grad_(), *(s.detach().requires_grad_() for s in state), *params]
    k = len(state)

    def f(x, *rest):
        s = rest[0] if k == 1 else tuple(rest[:k])
        return torch.func.functional_call(
            run, dict(zip(names, rest[k:], strict=True)), (x, s, lengths)
        )

    assert torch.autograd.gradcheck(f, inputs)


def test_auto_choice_on_cpu():
    x, x1 = torch.randn(2, 5, 3), torch.randn(2, 1, 3)
    lengths = torch.tensor([5, 2])
    assert choose_engine(LSTM(3, 4), x, None) == "native"  # oneDNN's LSTM kernel
    assert choose_engine(LSTM(3, 4), x, lengths) == "native"  # padded, cell state frozen
    assert choose_engine(GRU(3, 4), x, None) == "native"  # torch has the cell
    assert choose_engine(GRU(3, 4), x, lengths) == "native"
    assert choose_engine(RNN(3, 4), x, lengths) == "native"
    assert choose_engine(GRU(3, 4, reset_after=False), x, None) == "fused"  # no torch kernel
    assert choose_engine(RNN(3, 4, nonlinearity="swish"), x, lengths) == "fused"
    for layer in (LSTM(3, 4), GRU(3, 4, reset_after=False)):
        assert choose_engine(layer, x1, None) == "loop"  # one step: fewest ops per call


def test_auto_picks_fused_for_long_cpu_lstm_calls():
    """fused from T >= 256 and B*H >= 8192 in fp32 (pixel MNIST); native below."""
    pixel, lm = torch.empty(128, 784, 1), torch.empty(64, 100, 64)
    assert choose_engine(LSTM(1, 128), pixel, None) == "fused"
    assert (
        choose_engine(LSTM(1, 128, bidirectional=True), pixel, torch.full((128,), 700)) == "fused"
    )
    assert choose_engine(LSTM(1, 64), torch.empty(128, 256, 1), None) == "fused"
    assert choose_engine(LSTM(64, 256, num_layers=2), lm, None) == "native"  # T < 256
    assert choose_engine(LSTM(1, 32), pixel, None) == "native"  # B*H < 8192
    with torch.autocast("cpu", dtype=torch.bfloat16):  # oneDNN's bf16 kernel, where it runs
        want = "fused" if kernel_problem("lstm", pixel) else "native"
        assert choose_engine(LSTM(1, 128), pixel, None) == want


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("lengths", [None, [5, 3]])
def test_auto_works_for_other_dtypes(dtype, cls, lengths):
    layer = cls(3, 4, bidirectional=True).to(dtype)
    ref = cls(3, 4, bidirectional=True, engine="loop").to(dtype)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 3, dtype=dtype)
    lengths = None if lengths is None else torch.tensor(lengths)
    out, _ = layer(x, lengths=lengths)
    out_r, _ = ref(x, lengths=lengths)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 3e-2
    torch.testing.assert_close(out, out_r, atol=tol, rtol=0)


@pytest.mark.parametrize("engine,kind", [("loop", "lstm"), ("loop", "gru"), *ENGINE_KINDS])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_engines_train_under_autocast(engine, kind, with_lengths):
    """Mixed precision (trainer.precision=bf16-mixed): forward and backward run, fp32 grads."""
    cls, kw = KINDS[kind]
    torch.manual_seed(0)
    layer = cls(3, 8, num_layers=2, bidirectional=True, engine=engine, **kw)
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 5, 1]) if with_lengths else None
    ref, _ = layer(x, lengths=lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if engine == "native" and kernel_problem(layer.native_kernel(), x):
            # this CPU's oneDNN has no bf16 kernel for it (no AVX-512): one clear line
            with pytest.raises(UserError, match="use engine='fused'.*trainer.precision=32"):
                layer(x, lengths=lengths)
            return
        out, _ = layer(x, lengths=lengths)
        out.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in layer.parameters())
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=0)  # bf16: ~3 digits


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_no_grad_inference_and_state_carry(cls):
    layer = cls(3, 4, num_layers=2, engine="fused")
    x = torch.randn(2, 7, 3)
    with torch.no_grad():
        out, h = layer(x)
        o1, h1 = layer(x[:, :3])
        o2, h2 = layer(x[:, 3:], h1)
    torch.testing.assert_close(torch.cat((o1, o2), 1), out, atol=1e-6, rtol=0)
    for a, b in zip(states(h2), states(h), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_lstm_without_grad_gives_the_training_forward(with_lengths):
    """Under no_grad the fused LSTM skips what only a backward needs (fused.lstm_inference)."""
    torch.manual_seed(0)
    layer = LSTM(3, 5, num_layers=2, bidirectional=True, engine="fused")
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 1, 4, 3]) if with_lengths else None
    out, s = layer(x, lengths=lengths)
    with torch.no_grad():
        out_ng, s_ng = layer(x, lengths=lengths)
    torch.testing.assert_close(out_ng, out, atol=1e-6, rtol=0)
    for a, b in zip(states(s_ng), states(s), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("used", ["out", "h", "c", "h+c"])
def test_fused_lstm_gradients_of_some_outputs(used, with_lengths):
    """A loss on some outputs only (pooling="last" uses h_n alone): the others get no
    gradient (None in the backward) and must count as zero."""
    torch.manual_seed(2)
    ref = LSTM(3, 5, engine="loop")
    layer = LSTM(3, 5, engine="fused")
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 1, 4, 3]) if with_lengths else None
    results = []
    for m in (ref, layer):
        xg = x.clone().requires_grad_()
        out, (h, c) = m(xg, lengths=lengths)
        parts = {"out": out.square().sum(), "h": (h * h.detach()).sum(), "c": 2 * c.sum()}
        sum(parts[k] for k in used.split("+")).backward()
        results.append((grads(m), xg.grad))
        m.zero_grad(set_to_none=True)
    (g_r, dx_r), (g_o, dx_o) = results
    for name in g_r:
        torch.testing.assert_close(g_o[name], g_r[name], atol=1e-5, rtol=0, msg=name)
    torch.testing.assert_close(dx_o, dx_r, atol=1e-5, rtol=0)


@pytest.fixture
def kept_buffers(monkeypatch):
    """Every buffer of the fused LSTM goes through buffers.empty's keep-and-reuse path."""
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    buffers.release()
    yield
    buffers.release()


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("num_layers,bi", [(1, False), (2, True)])
def test_fused_lstm_on_kept_buffers_agrees_with_loop(kept_buffers, num_layers, bi, with_lengths):
    """Buffers kept from one call serve the next: three calls in a row, each equal to loop."""
    torch.manual_seed(4)
    ref = LSTM(3, 5, num_layers=num_layers, bidirectional=bi, engine="loop")
    other = LSTM(3, 5, num_layers=num_layers, bidirectional=bi, engine="fused")
    other.load_state_dict(ref.state_dict())
    lengths = torch.tensor([6, 1, 4, 3]) if with_lengths else None
    for _ in range(3):
        assert_same_run(other, ref, torch.randn(4, 6, 3), None, lengths)
    assert buffers._kept, "the fused LSTM should have kept its buffers"


def test_kept_buffers_are_not_reused_while_in_use(kept_buffers):
    """Two graphs alive at once, a graph kept with retain_graph=True and backpropagated
    again after another call, and an output the caller still holds: no later call
    writes over any of them."""
    torch.manual_seed(5)
    ref = LSTM(3, 5, engine="loop")
    layer = LSTM(3, 5, engine="fused")
    layer.load_state_dict(ref.state_dict())
    xs = [torch.randn(4, 6, 3) for _ in range(3)]

    def loss(m, x):
        out, s = m(x)
        return loss_of(out, s), out

    params = list(layer.parameters())
    expected = [torch.autograd.grad(loss(ref, x)[0], list(ref.parameters())) for x in xs]
    loss_a, out_a = loss(layer, xs[0])
    out_a_then = out_a.detach().clone()
    loss_b, _ = loss(layer, xs[1])  # while a's graph is alive
    grads_b = torch.autograd.grad(loss_b, params)
    grads_a = torch.autograd.grad(loss_a, params, retain_graph=True)
    loss_c, _ = loss(layer, xs[2])  # after a's backward, its graph retained
    grads_c = torch.autograd.grad(loss_c, params)
    grads_a2 = torch.autograd.grad(loss_a, params)  # a again
    assert torch.equal(out_a, out_a_then)
    for got, want in [
        (grads_a, expected[0]),
        (grads_b, expected[1]),
        (grads_c, expected[2]),
        (grads_a2, expected[0]),
    ]:
        for g, e in zip(got, want, strict=True):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=0)


def test_buffers_hand_out_only_memory_nothing_refers_to(monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "KEEP", 3)
    buffers.release()
    like = torch.empty(0)
    a = buffers.empty((4, 5), like)
    b = buffers.empty((4, 5), like)  # a is in use: other memory
    assert b.data_ptr() != a.data_ptr()
    view, ptr = a[1:], a.data_ptr()
    del a
    assert buffers.empty((20,), like).data_ptr() != ptr  # a view of a is still alive
    del view
    assert buffers.empty((2, 10), like).data_ptr() == ptr  # now it is free
    assert buffers.empty((41,), like).numel() == 41  # nothing kept is large enough
    assert len(buffers._kept) <= 3
    assert buffers.empty((4, 5), like.double()).dtype == torch.float64
    buffers.release()
    assert not buffers._kept


@pytest.mark.parametrize("time_dim", [0, 1])
def test_reverse_within_lengths_and_its_gradient(time_dim):
    lengths = torch.tensor([4, 1, 3])
    x = torch.randn(3, 4, 2) if time_dim == 1 else torch.randn(4, 3, 2)
    x.requires_grad_()
    out = reverse_within(x, lengths, time_dim)
    bf = lambda t: t if time_dim == 1 else t.transpose(0, 1)  # noqa: E731 (batch-first view)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(bf(out)[b, :n], bf(x)[b, :n].flip(0))  # reversed within the length
        assert torch.equal(bf(out)[b, n:], bf(x)[b, n:])  # padding stays put
    assert torch.equal(reverse_within(out, lengths, time_dim), x)  # an involution
    weight = torch.randn_like(x)
    (out * weight).sum().backward()
    assert torch.equal(x.grad, reverse_within(weight, lengths, time_dim))


AVX2_ONLY = """
import torch
from seqmodels.errors import UserError
from seqmodels.nn import LSTM
from seqmodels.nn.auto import choose_engine
layer, x = LSTM(3, 4), torch.randn(2, 5, 3)
with torch.autocast("cpu", dtype=torch.bfloat16):
    print("auto", choose_engine(layer, x, None))
    layer(x)[0].float().sum().backward()  # auto trains
    layer.engine = "native"
    try:
        layer(x)
        print("native ran")
    except UserError as e:
        print("native refused:", e)
print("fp32", choose_engine(layer, x, None))
"""


def test_auto_falls_back_where_onednn_has_no_bf16_lstm():
    """On a CPU without AVX-512 (simulated: oneDNN capped at AVX2) torch's LSTM fails
    under bf16 autocast: auto must pick fused there, native must say so in one line,
    and fp32 keeps native."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run(
        [sys.executable, "-c", AVX2_ONLY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "auto fused" in out
    assert "native refused: engine='native': torch's lstm kernel fails under torch.bfloat16" in out
    assert "use engine='fused' (model.engine=fused) or full precision (trainer.precision=32)" in out
    assert "fp32 native" in out
