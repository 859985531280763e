"""The compiled engine (compiled.py) against the loop engine: outputs, final states and
gradients (fp32, 1e-5) with lengths and both directions, on both of its recurrences (the
input product for the whole sequence, or per chunk for a narrow input), a float64
gradcheck, the chunking, and the eager fallback when compilation fails. Compiling is slow (seconds per cell class and
shape), so the shapes are tiny and the cells few."""

import warnings

import pytest
import torch
from conftest import assert_same_run

from seqmodels.errors import UserError
from seqmodels.nn import GRU, LSTM, GRUCell, IndRNNCell, PeepholeLSTMCell, Recurrent, compiled

I, H, B, T = 3, 4, 3, 6  # noqa: E741


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """K = 3 for T = 6: two chunks per sequence through one compiled function."""
    monkeypatch.setattr(compiled, "MAX_CHUNK", 4)


@pytest.mark.parametrize(
    "cell,with_lengths,inline",
    [
        (PeepholeLSTMCell, True, False),
        pytest.param(PeepholeLSTMCell, False, False, marks=pytest.mark.slow),
        pytest.param(PeepholeLSTMCell, True, True, marks=pytest.mark.slow),
        pytest.param(GRUCell, True, False, marks=pytest.mark.slow),
        pytest.param(GRUCell, True, True, marks=pytest.mark.slow),
        pytest.param(IndRNNCell, True, False, marks=pytest.mark.slow),
        pytest.param(IndRNNCell, True, True, marks=pytest.mark.slow),
    ],
)
def test_compiled_agrees_with_loop(cell, with_lengths, inline, monkeypatch):
    """A user's cell (step), the reset_after GRU (split_step), IndRNN (no hidden product);
    the slow ones each compile once more."""
    monkeypatch.setattr(compiled, "INLINE_MAX_INPUT", I if inline else I - 1)
    torch.manual_seed(0)
    ref = Recurrent(cell, I, H, bidirectional=True, engine="loop")
    other = Recurrent(cell, I, H, bidirectional=True, engine="compiled")
    other.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    h0 = torch.randn(2, B, H)
    s0 = (h0, torch.randn(2, B, H)) if cell is PeepholeLSTMCell else h0
    lengths = torch.tensor([6, 1, 4]) if with_lengths else None
    assert_same_run(other, ref, x, s0, lengths)
    if cell is PeepholeLSTMCell and with_lengths and not inline:  # inference: its own graph
        with torch.no_grad():
            out, (h, c) = other(x, s0, lengths=lengths)
            out_r, (h_r, c_r) = ref(x, s0, lengths=lengths)
        for a, b in ((out, out_r), (h, h_r), (c, c_r)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_another_batch_size_compiles_once_for_any():
    """A second batch size compiles a graph for any batch size; a third reuses it."""
    torch.manual_seed(0)
    ref = Recurrent(PeepholeLSTMCell, I, H, engine="loop")
    other = Recurrent(PeepholeLSTMCell, I, H, engine="compiled")
    other.load_state_dict(ref.state_dict())
    graphs = []
    counters = torch._dynamo.utils.counters  # (loaded by the compile; not at import)
    for batch in (3, 5, 2):
        assert_same_run(other, ref, torch.randn(batch, T, I), None, None)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[2] - graphs[1] == 0 and graphs[1] - graphs[0] == 1


def test_compiled_gradcheck_float64():
    """The narrow-input recurrence (input_size 2), whose chunks differentiate every weight."""
    torch.manual_seed(0)
    layer = LSTM(2, 3, engine="compiled").double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3])

    def f(x, *params):
        out, (h, c) = torch.func.functional_call(
            layer, dict(zip(names, params, strict=True)), (x,), {"lengths": lengths}
        )
        return out, h, c

    names = [n for n, _ in layer.named_parameters()]
    assert torch.autograd.gradcheck(f, (x, *layer.parameters()))


def test_chunk_size():
    assert [compiled.chunk_size(t) for t in (1, 4, 6, 8, 7)] == [1, 4, 3, 4, 4]
    compiled.MAX_CHUNK = 16  # (restored by the fixture)
    assert [compiled.chunk_size(t) for t in (100, 784, 97)] == [10, 16, 16]


def test_a_failed_compile_warns_once_and_runs_eagerly(monkeypatch):
    def broken(fn, **kw):
        def call(*a):
            raise RuntimeError("no C++ compiler\nmore")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "_CHUNKS", {})
    monkeypatch.setattr(compiled, "_failed", {})
    torch.manual_seed(0)
    ref = Recurrent(PeepholeLSTMCell, I, H, engine="loop")
    other = Recurrent(PeepholeLSTMCell, I, H, engine="compiled")
    other.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        assert_same_run(other, ref, x, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_run(other, ref, x, None, None)


def test_compiled_refuses_a_cell_without_step():
    layer = GRU(I, H, reset_after=False, engine="compiled")
    with pytest.raises(UserError, match="engine='compiled' cannot run GRUCell"):
        layer(torch.randn(B, T, I))


@pytest.mark.slow
def test_a_compiled_layer_under_torch_compile_and_export():
    """Inside a torch.compile'd model the layer runs outside the graph (its chunks compiled
    on their own); torch.export traces the fused recurrence: both give loop's numbers."""
    torch.manual_seed(0)
    ref = Recurrent(PeepholeLSTMCell, I, H, engine="loop")
    other = Recurrent(PeepholeLSTMCell, I, H, engine="compiled")
    other.load_state_dict(ref.state_dict())
    x = torch.randn(B, T, I)
    out, _ = torch.compile(other)(x)
    out.square().sum().backward()
    out_r, _ = ref(x)
    out_r.square().sum().backward()
    torch.testing.assert_close(out, out_r, atol=1e-5, rtol=0)
    for p, q in zip(other.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=0)
    exported = torch.export.export(other, (x,))
    torch.testing.assert_close(exported.module()(x)[0], out_r, atol=1e-5, rtol=0)
