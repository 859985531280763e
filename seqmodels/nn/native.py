"""The `native` engine: torch's fused RNN kernels run on the layer's own parameters.

`torch._VF.lstm/gru/rnn_tanh/rnn_relu` are the functions torch.nn.LSTM/GRU/RNN
call (cuDNN on CUDA, aten/oneDNN on CPU). They take the weights as a flat list
[w_ih, w_hh, b_ih, b_hh] per layer and direction; here w_ih and w_hh are column
views of each cell's i2h.weight, b_ih is i2h.bias and b_hh holds what torch
keeps apart from it (zero, or b_hn for the reset_after GRU). Nothing is copied
and kept in sync by hand: autograd routes the gradients back into i2h.

With lengths, the kernels run on a PackedSequence (torch's own correct path)
on CUDA; on CPU that path is several times slower than padded (bench_nn's
case (b)), so there they run on the padded batch instead,
the LSTM with one extra input column that freezes its cell state on padded
steps (see _run_padded).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.errors import UserError
from seqmodels.nn.engines import reverse_within


def kernel_problem(kind: str, x: Tensor) -> str | None:
    """Why torch's `kind` kernel cannot train on x here (device, dtype, autocast), or None.

    Some builds lack a kernel for some settings: oneDNN's bf16 LSTM, which torch
    uses under CPU bf16 autocast, needs AVX-512 and fails on AVX2-only CPUs. The
    answer is probed once per (kernel, device, dtype, autocast dtype) and cached.
    """
    if torch.compiler.is_compiling():  # a tracer's fake tensors cannot run the probe
        return None
    device = x.device.type
    amp = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    return _probe(kind, x.device, x.dtype, amp)


@functools.cache
def _probe(kind: str, device: torch.device, dtype: torch.dtype, amp: torch.dtype | None):
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    I, H = 2, 3  # noqa: E741
    try:
        with torch.enable_grad(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            x = torch.zeros(1, 2, I, device=device, dtype=dtype, requires_grad=True)
            h0 = torch.zeros(1, 1, H, device=device, dtype=dtype)
            w = [
                torch.full((gates * H, n), 0.1, device=device, dtype=dtype, requires_grad=True)
                for n in (I, H)
            ]
            b = [torch.zeros(gates * H, device=device, dtype=dtype) for _ in range(2)]
            hx = [h0, h0] if kind == "lstm" else h0
            out = getattr(torch._VF, kind)(x, hx, w + b, True, 1, 0.0, True, False, True)[0]
            out.float().sum().backward()
    except RuntimeError as e:
        what = f"{amp} autocast" if amp is not None else f"{dtype}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"torch's {kind} kernel fails under {what} on this {device.type} ({first[:90]})"
    return None


def flat_weights(layer) -> list[Tensor]:
    """[w_ih, w_hh, b_ih, b_hh] per cell, in torch's order; views of i2h where possible."""
    weights: list[Tensor] = []
    for cell in layer.cells:
        weights += [w for w in cell.torch_parameters() if w is not None]
    return weights


def run_native(layer, x: Tensor, state: tuple[Tensor, ...] | None, lengths: Tensor | None):
    """x (B, T, I) batch-first, state None or (h0,) / (h0, c0); returns
    (output (B, T, D*H), h_n or (h_n, c_n))."""
    support = layer.engine_support  # seqmodels.nn.support: which engine runs these cells
    refusal = support.refusal("native")
    if refusal is not None:
        raise UserError(refusal)
    kind = support.kernel
    problem = support.native_problem(x)
    if problem is not None:
        raise UserError(
            f"engine='native': {problem}; use engine='fused' (model.engine=fused) "
            "or full precision (trainer.precision=32)"
        )
    fn = getattr(torch._VF, kind)
    B = x.shape[0]
    LD = layer.num_layers * layer.num_directions
    hx: Any
    if state is None:
        h0 = x.new_zeros(LD, B, layer.hidden_size)
        hx = (h0, h0) if kind == "lstm" else h0
    else:
        hx = state if kind == "lstm" else state[0]
    args = (
        flat_weights(layer),
        layer.bias,
        layer.num_layers,
        layer.dropout,
        layer.training,
        layer.bidirectional,
    )
    if lengths is None:
        res = fn(x, list(hx) if kind == "lstm" else hx, *args, True)
        return res[0], ((res[1], res[2]) if kind == "lstm" else res[1])
    if not x.is_cuda:
        return _run_padded(layer, kind, fn, x, hx, lengths)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    assert order is not None and unorder is not None
    hxa: Any
    if kind == "lstm":
        hxa = [hx[0].index_select(1, order), hx[1].index_select(1, order)]
    else:
        hxa = hx.index_select(1, order)
    res = fn(packed.data, packed.batch_sizes, hxa, *args)
    out_packed = packed._replace(data=res[0])
    out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=x.shape[1])
    if kind == "lstm":
        return out, (res[1].index_select(1, unorder), res[2].index_select(1, unorder))
    return out, res[1].index_select(1, unorder)


# Pre-activation offset of the LSTM's freeze column: in fp32 (and bf16) sigmoid(z + 1e4)
# rounds to exactly 1 and sigmoid(z - 1e4) to exactly 0 for any |z| below ~9900.
FREEZE = 1e4


def _run_padded(layer, kind: str, fn, x: Tensor, hx: Any, lengths: Tensor):
    """The kernels with lengths on the padded batch, one call per layer and direction.

    Padding sits after each sequence's last step, so a forward pass over the
    padded batch gives the right outputs at every valid step, and the state
    after step lengths-1 is the output there; the backward direction runs on
    each sequence reversed within its length. torch's packed path, the other
    way to get this, runs several times slower on CPU.

    The LSTM's final cell state is not among the outputs; instead the padded
    steps leave it alone: the input gets one more column, 1 at padded steps and
    0 elsewhere, weighted -FREEZE for the input gate and +FREEZE for the forget
    gate, so there i = 0 and f = 1 exactly and c_t = c_{t-1}; the kernel's c_n
    is then each sequence's own. The gates' derivatives there are exactly 0, so
    the padded steps add nothing to any gradient, and on valid steps the column
    adds exact zeros.
    """
    B, T, H = x.shape[0], x.shape[1], layer.hidden_size
    D = layer.num_directions
    weights = flat_weights(layer)
    per_cell = len(weights) // len(layer.cells)
    padded = (torch.arange(T, device=x.device).view(1, -1) >= lengths.view(-1, 1)).unsqueeze(-1)
    last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)
    if kind == "lstm":
        freeze = x.new_zeros(4 * H, 1)
        freeze[:H], freeze[H : 2 * H] = -FREEZE, FREEZE
        h0, c0 = hx
    else:
        h0 = hx
    h_n, c_n = [], []
    for k in range(layer.num_layers):
        if k > 0 and layer.dropout > 0.0 and layer.training:
            x = F.dropout(x, layer.dropout, True)
        if kind == "lstm":
            x = torch.cat((x, padded.to(x.dtype)), -1)
        outs = []
        for d in range(D):
            i = k * D + d
            inp = x if d == 0 else reverse_within(x, lengths, 1)  # padding stays in place
            w = weights[i * per_cell : (i + 1) * per_cell]
            if kind == "lstm":
                w = [torch.cat((w[0], freeze), 1), *w[1:]]
                out, _, c = fn(
                    inp,
                    [h0[i : i + 1], c0[i : i + 1]],
                    w,
                    layer.bias,
                    1,
                    0.0,
                    layer.training,
                    False,
                    True,
                )
                c_n.append(c[0])
            else:
                out, _ = fn(inp, h0[i : i + 1], w, layer.bias, 1, 0.0, layer.training, False, True)
            h_n.append(out.gather(1, last).squeeze(1))
            outs.append(out if d == 0 else reverse_within(out, lengths, 1))
        x = outs[0] if D == 1 else torch.cat(outs, -1)
    # where, not a multiply: a relu RNN's padded steps may hold inf, and inf * 0 is nan
    out = torch.where(padded, 0.0, x)
    return out, ((torch.stack(h_n), torch.stack(c_n)) if kind == "lstm" else torch.stack(h_n))
