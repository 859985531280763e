"""Layers against torch.nn (through from_torch/to_torch), lengths against per-sequence runs,
PackedSequence, cell order, batch_first, unbatched input, dropout, and bad input messages."""

import pytest
import torch
from conftest import loss_of, states
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.nn import GRU, LSTM, RNN, GRUCell, LSTMCell

CASES = [
    (LSTM, torch.nn.LSTM, {}),
    (GRU, torch.nn.GRU, {}),
    (RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
]
IDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def torch_grads(t, layer):
    """torch's gradients mapped onto our layout: i2h = [W_ih | W_hh], bias = b_ih (+ b_hh)."""
    out = []
    sfx = [
        f"l{k}" + ("_reverse" if d else "")
        for k in range(t.num_layers)
        for d in range(1 + t.bidirectional)
    ]
    for cell, s in zip(layer.cells, sfx, strict=False):
        g_w = torch.cat((getattr(t, f"weight_ih_{s}").grad, getattr(t, f"weight_hh_{s}").grad), 1)
        out.append((cell.i2h.weight.grad, g_w))
        if t.bias:
            # b_ih and b_hh enter the sum alike (GRU n-part: b_hn is separate)
            out.append((cell.i2h.bias.grad, getattr(t, f"bias_ih_{s}").grad))
            if getattr(cell, "bias_hn", None) is not None:
                H = cell.hidden_size
                out.append((cell.bias_hn.grad, getattr(t, f"bias_hh_{s}").grad[2 * H :]))
    return out


@pytest.mark.parametrize("cls,tcls,kw", CASES, ids=IDS)
@pytest.mark.parametrize(
    "num_layers,bi,bias,batch_first", [(1, False, True, True), (2, True, False, False)]
)
def test_from_torch_matches_torch(cls, tcls, kw, num_layers, bi, bias, batch_first):
    torch.manual_seed(0)
    t = tcls(
        3, 4, num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bi, **kw
    )
    layer = cls.from_torch(t, engine="loop")
    assert layer.batch_first == batch_first and len(layer.cells) == num_layers * (1 + bi)
    x = torch.randn(2, 5, 3) if batch_first else torch.randn(5, 2, 3)
    D = 1 + bi
    h0 = torch.randn(num_layers * D, 2, 4)
    s0 = (h0, torch.randn_like(h0)) if cls is LSTM else h0
    out, s = layer(x, s0)
    out_t, s_t = t(x, s0)
    torch.testing.assert_close(out, out_t, atol=1e-5, rtol=0)
    for a, b in zip(states(s), states(s_t), strict=False):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    loss_of(out, s).backward()
    loss_of(out_t, s_t).backward()
    for a, b in torch_grads(t, layer):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls,tcls,kw", CASES[:3], ids=IDS[:3])
def test_to_torch_roundtrip(cls, tcls, kw):
    layer = cls(3, 4, num_layers=2, bidirectional=True, **kw)
    t = layer.to_torch()
    assert isinstance(t, tcls) and t.batch_first and t.bidirectional and t.num_layers == 2
    x = torch.randn(2, 6, 3)
    out, s = layer(x)
    out_t, s_t = t(x)
    torch.testing.assert_close(out, out_t, atol=1e-5, rtol=0)
    back = cls.from_torch(t)
    torch.testing.assert_close(back(x)[0], out, atol=1e-6, rtol=0)


def test_interop_errors():
    with pytest.raises(ValueError, match="proj_size=2 has no equivalent"):
        LSTM.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="LSTM.from_torch expects a torch.nn.LSTM, got GRU"):
        LSTM.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match=r"GRU\(reset_after=False\).to_torch\(\): torch.nn has"):
        GRU(3, 4, reset_after=False).to_torch()
    with pytest.raises(ValueError, match=r"RNN\(nonlinearity='swish'\).to_torch\(\): torch.nn has"):
        RNN(3, 4, nonlinearity="swish").to_torch()


LAYER_KINDS = [
    (LSTM, {}),
    (GRU, {}),
    (GRU, {"reset_after": False}),
    (RNN, {"nonlinearity": "tanh"}),
    (RNN, {"nonlinearity": "swish"}),
]
LENGTH_CASES = [
    (cls, kw, engine)
    for cls, kw in LAYER_KINDS
    for engine in ("loop", "fused", "native", "auto")
    if engine != "native" or kw not in ({"reset_after": False}, {"nonlinearity": "swish"})
]


@pytest.mark.parametrize("cls,kw,engine", LENGTH_CASES)
def test_lengths_equal_running_each_sequence_alone(cls, kw, engine):
    torch.manual_seed(1)
    layer = cls(3, 4, num_layers=2, bidirectional=True, engine=engine, **kw)
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    out, s = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        out_b, s_b = layer(x[b : b + 1, :n])  # the sequence alone, unpadded
        torch.testing.assert_close(out[b, :n], out_b[0], atol=1e-6, rtol=0)
        assert not out[b, n:].any(), "padded outputs must be zero"
        for a, a_b in zip(states(s), states(s_b), strict=False):
            torch.testing.assert_close(a[:, b], a_b[:, 0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("engine", ["loop", "fused", "native"])
def test_lstm_padding_content_changes_nothing(engine):
    """Whatever the padding holds (here large values that would saturate every gate),
    outputs, final (h, c) and gradients are those of the valid steps alone; the native
    engine's freeze column (native.py) must keep c exactly, on CPU, without packing."""
    torch.manual_seed(3)
    layer = LSTM(3, 8, num_layers=2, bidirectional=True, engine=engine)
    lengths = torch.tensor([7, 3, 5])
    x = torch.randn(3, 7, 3)
    valid = torch.arange(7).view(1, -1, 1) < lengths.view(-1, 1, 1)
    results = []
    for fill in (0.0, 50.0):
        xp = torch.where(valid, x, fill).requires_grad_()
        layer.zero_grad()
        out, (h, c) = layer(xp, lengths=lengths)
        (out.square().sum() + h.sum() + 3 * c.sum()).backward()
        assert not xp.grad[~valid.expand_as(xp)].any(), "padded inputs must get zero gradient"
        results.append((out, h, c, xp.grad, [p.grad.clone() for p in layer.parameters()]))
    (o0, h0, c0, dx0, g0), (o1, h1, c1, dx1, g1) = results
    for a, b in [(o0, o1), (h0, h1), (c0, c1), (dx0, dx1), *zip(g0, g1, strict=True)]:
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cls,tcls", [(LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU)])
def test_packed_sequence_in_and_out(cls, tcls):
    torch.manual_seed(2)
    t = tcls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    layer = cls.from_torch(t, engine="fused")
    x = torch.randn(3, 5, 3)
    packed = pack_padded_sequence(
        x, torch.tensor([2, 5, 3]), batch_first=True, enforce_sorted=False
    )
    out, s = layer(packed)
    out_t, s_t = t(packed)
    assert isinstance(out, type(packed))
    torch.testing.assert_close(out.data, out_t.data, atol=1e-5, rtol=0)
    assert torch.equal(out.batch_sizes, out_t.batch_sizes)
    torch.testing.assert_close(
        pad_packed_sequence(out)[0], pad_packed_sequence(out_t)[0], atol=1e-5, rtol=0
    )
    for a, b in zip(states(s), states(s_t), strict=False):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_cells_in_torch_order_and_stepping_them_matches_the_layer():
    torch.manual_seed(3)
    layer = LSTM(3, 4, num_layers=2, bidirectional=True)
    assert isinstance(layer.cells, torch.nn.ModuleList) and len(layer.cells) == 4
    assert all(isinstance(c, LSTMCell) for c in layer.cells)
    assert [c.input_size for c in layer.cells] == [3, 3, 8, 8]
    # stepping the forward cells of a unidirectional 2-layer stack = the layer
    uni = GRU(3, 4, num_layers=2)
    x = torch.randn(2, 5, 3)
    out, h = uni(x)
    s = [c.init_state(2) for c in uni.cells]
    for t in range(5):
        inp = x[:, t]
        for k, cell in enumerate(uni.cells):
            inp, s[k] = cell(inp, s[k])
        torch.testing.assert_close(out[:, t], inp, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, torch.stack(s), atol=1e-6, rtol=0)
    assert isinstance(uni.cells[0], GRUCell)


def test_stepping_the_layer_one_token_at_a_time_with_state():
    torch.manual_seed(4)
    layer = LSTM(3, 4, num_layers=2)
    x = torch.randn(2, 6, 3)
    out, s_full = layer(x)
    s = None
    for t in range(6):
        o, s = layer(x[:, t : t + 1], s)
        torch.testing.assert_close(o[:, 0], out[:, t], atol=1e-6, rtol=0)
    for a, b in zip(s, s_full, strict=False):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_unbatched_input_like_torch():
    t = torch.nn.GRU(3, 4, num_layers=2, batch_first=True)
    layer = GRU.from_torch(t)
    x = torch.randn(5, 3)
    out, h = layer(x)
    out_t, h_t = t(x)
    assert out.shape == (5, 4) and h.shape == (2, 4)
    torch.testing.assert_close(out, out_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_t, atol=1e-5, rtol=0)


def test_dropout_between_layers_only_in_training():
    layer = LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    torch.manual_seed(0)
    a = layer(x)[0]
    torch.manual_seed(1)
    b = layer(x)[0]
    assert not torch.allclose(a, b)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])


@pytest.mark.parametrize(
    "call,msg",
    [
        (
            lambda m: m(torch.randn(2, 5)[None, None]),
            r"input must be 3-D \(batch, time, input_size\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, 7)),
            r"input: expected last dimension input_size=3, got shape \(2, 5, 7\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), lengths=torch.tensor([6, 2])),
            r"lengths: every length must be in \[1, T=5\].*max 6",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), lengths=torch.tensor([0, 2])),
            r"lengths: every length must be in \[1, T=5\].*min 0",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), lengths=torch.tensor([3])),
            r"lengths: expected shape \(batch,\)=\(2,\), got \(1,\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), lengths=torch.tensor([3.0, 2.0])),
            "lengths: expected an integer tensor",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), torch.zeros(1, 2, 4)),
            r"state: expected a tuple \(h, c\) of tensors shaped \(num_layers\*num_directions, batch, hidden_size\)=\(2, 2, 4\)",
        ),
        (
            lambda m: m(torch.randn(2, 5, 3), (torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))),
            r"=\(2, 2, 4\), got \[\(2, 3, 4\), \(2, 3, 4\)\]",
        ),
    ],
    ids=[
        "rank",
        "features",
        "len_gt_T",
        "len_lt_1",
        "len_shape",
        "len_float",
        "state_not_tuple",
        "state_shape",
    ],
)
def test_bad_input_messages(call, msg):
    layer = LSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match=msg):
        call(layer)


def test_bad_constructor_messages():
    with pytest.raises(
        ValueError,
        match=r"state: expected shape \(num_layers\*num_directions, batch, hidden_size\)=\(1, 2, 4\), got \(2, 2, 4\)",
    ):
        GRU(3, 4)(torch.randn(2, 5, 3), torch.zeros(2, 2, 4))
    with pytest.raises(
        ValueError, match="engine must be one of auto, loop, fused, compiled, native, got 'cudnn'"
    ):
        LSTM(3, 4, engine="cudnn")
    with pytest.raises(
        ValueError, match="nonlinearity must be one of tanh, relu, swish, got 'sigmoid'"
    ):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(
        ValueError, match=r"engine='native' is not available for GRU\(reset_after=False\)"
    ):
        GRU(3, 4, reset_after=False, engine="native")
    with pytest.raises(
        ValueError, match=r"engine='native' is not available for RNN\(nonlinearity='swish'\)"
    ):
        RNN(3, 4, nonlinearity="swish", engine="native")
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        LSTM(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a float in \[0, 1\), got 1.5"):
        LSTM(3, 4, dropout=1.5)


class MyLSTM(LSTM):
    """A user's subclass: engines and interop must treat it as the LSTM it is."""


class MyGRU(GRU):
    pass


class MyRNN(RNN):
    pass


@pytest.mark.parametrize("cls,kw", [(MyLSTM, {}), (MyGRU, {}), (MyRNN, {"nonlinearity": "relu"})])
@pytest.mark.parametrize("engine", ["loop", "fused", "native", "auto"])
def test_subclasses_run_every_engine_and_convert(cls, kw, engine):
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, bidirectional=True, engine=engine, **kw)
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    ref = layer.to_torch()
    assert type(ref) is cls.torch_class
    out, _ = layer(x)
    torch.testing.assert_close(out, ref(x)[0], atol=1e-5, rtol=0)
    back = cls.from_torch(ref, engine=engine)
    assert type(back) is cls
    torch.testing.assert_close(
        back(x, lengths=lengths)[0], layer(x, lengths=lengths)[0], atol=1e-6, rtol=0
    )
