"""Every layer under torch.compile and torch.export, on every engine, with and without lengths.

torch.compile: outputs and gradients equal eager (the recurrence runs outside the graph,
the model around it compiles). torch.export: a dynamic batch, and a dynamic length (torch's
scan operator), give eager's outputs on batch sizes and lengths never traced.
"""

import functools

import pytest
import torch
from conftest import states

from seqmodels.nn import GRU, LSTM, RNN, IndRNNCell, PeepholeLSTMCell, Recurrent

I, H = 4, 6  # noqa: E741
KINDS = {
    "lstm": lambda **kw: LSTM(I, H, **kw),
    "gru": lambda **kw: GRU(I, H, **kw),
    "gru_before": lambda **kw: GRU(I, H, reset_after=False, **kw),
    "rnn": lambda **kw: RNN(I, H, **kw),
    "peephole": lambda **kw: Recurrent(PeepholeLSTMCell, I, H, **kw),
    "indrnn": lambda **kw: Recurrent(IndRNNCell, I, H, **kw),
}
NATIVE = {"lstm", "gru", "rnn"}
# the dynamic-length exports in the fast suite: a step cell with lengths, a forward-only one
FAST_ANY_LENGTH = {("lstm", True), ("gru_before", False)}
CASES = [
    (kind, engine)
    for kind in KINDS
    for engine in ("auto", "loop", "fused", "native")
    if engine != "native" or kind in NATIVE
]


class Model(torch.nn.Module):
    """A layer inside a model: a projection before it and a loss-like reduction after."""

    def __init__(self, layer):
        super().__init__()
        self.inp = torch.nn.Linear(I, I)
        self.layer = layer

    def forward(self, x, lengths=None):
        out, s = self.layer(torch.tanh(self.inp(x)), lengths=lengths)
        return out, states(s)[0]


def make(kind, engine, num_layers=1):
    torch.manual_seed(0)
    return Model(KINDS[kind](num_layers=num_layers, bidirectional=True, engine=engine))


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("kind,engine", CASES)
def test_compile_gives_eager_outputs_and_gradients(kind, engine, with_lengths):
    """torch.compile (dynamo + AOTAutograd: the tracing that fails on torch's oneDNN
    LSTM kernel in training); the inductor backend is in the slow test below."""
    model = make(kind, engine)
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(3, 5, I)
    lengths = torch.tensor([5, 2, 4]) if with_lengths else None
    results = []
    for m in (model, compiled):
        m.zero_grad()
        out, h = m(x, lengths)
        (out.square().sum() + h.sum()).backward()
        results.append((out, h, [p.grad.clone() for p in model.parameters()]))
    (out_e, h_e, g_e), (out_c, h_c, g_c) = results
    torch.testing.assert_close(out_c, out_e, atol=1e-4, rtol=0)
    torch.testing.assert_close(h_c, h_e, atol=1e-4, rtol=0)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "peephole"])
def test_compile_with_inductor_trains_like_eager(kind):
    model = make(kind, "auto", num_layers=2)
    compiled = torch.compile(model)
    x, lengths = torch.randn(4, 7, I), torch.tensor([7, 3, 5, 1])
    for m in (model, compiled):
        m.zero_grad()
        out, h = m(x, lengths)
        (out.square().sum() + h.sum()).backward()
        if m is model:
            want = [p.grad.clone() for p in model.parameters()]
    for p, g in zip(model.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=0)


def export_and_compare(model, with_lengths, dynamic_length):
    batch = torch.export.Dim("batch", min=1, max=64)
    x_dims = (
        {0: batch, 1: torch.export.Dim("time", min=2, max=1024)} if dynamic_length else {0: batch}
    )
    x = torch.randn(3, 5, I)
    if with_lengths:
        args, shapes = (x, torch.tensor([5, 2, 4])), {"x": x_dims, "lengths": {0: batch}}
    else:
        args, shapes = (x,), {"x": x_dims}
    program = torch.export.export(model, args, dynamic_shapes=shapes)
    sizes = ((1, 2), (7, 11), (5, 40)) if dynamic_length else ((1, 5), (7, 5))
    for B, T in sizes:  # never traced
        x = torch.randn(B, T, I)
        new = (x, torch.randint(1, T + 1, (B,))) if with_lengths else (x,)
        for got, want in zip(program.module()(*new), model(*new), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("kind,engine", CASES)
def test_export_with_a_dynamic_batch(kind, engine, with_lengths):
    export_and_compare(make(kind, engine).eval(), with_lengths, dynamic_length=False)


# A dynamic length runs every engine on fused.py's scan; tracing a scan takes seconds.
ANY_LENGTH = [
    pytest.param(
        kind, lengths, marks=[] if (kind, lengths) in FAST_ANY_LENGTH else pytest.mark.slow
    )
    for kind in KINDS
    for lengths in (False, True)
]


@pytest.mark.parametrize("kind,with_lengths", ANY_LENGTH)
def test_export_with_a_dynamic_length(kind, with_lengths):
    export_and_compare(make(kind, "auto").eval(), with_lengths, dynamic_length=True)


@pytest.mark.parametrize("engine", ["native", "fused"])
def test_export_with_a_fixed_length_keeps_torchs_kernel(engine):
    """A static length keeps the engine: native exports torch's aten.lstm, which ONNX
    exporters map to their LSTM operator; fused exports the loop over the steps."""
    model = make("lstm", engine).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(3, 5, I),), dynamic_shapes={"x": {0: batch}})
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("lstm" in op for op in ops) == (engine == "native"), ops
    x = torch.randn(9, 5, I)
    torch.testing.assert_close(program.module()(x)[0], model(x)[0], atol=1e-5, rtol=0)


def test_a_compiled_model_recompiles_for_no_length():
    """The recurrence is outside the graph: new lengths and batch sizes reuse it."""
    model = Model(LSTM(I, H))
    counter = functools.partial(torch._dynamo.utils.counters.__getitem__, "stats")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(model, backend="eager", dynamic=True)
    for B, T in ((2, 3), (4, 9), (3, 17)):
        compiled(torch.randn(B, T, I))
    assert counter()["unique_graphs"] <= 4  # graphs before and after the layer, not per length
