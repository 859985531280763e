"""seqmodels.nn layers as ONNX's own LSTM, GRU and RNN operators.

What torch 2.13's exporters do with recurrent layers (measured on torch.nn's own):

- `torch.onnx.export(..., dynamo=True)`, the default since torch 2.9 (torch.export,
  then onnxscript's torchlib): LSTM and GRU become ONNX `LSTM`/`GRU` nodes that
  take any batch size and length; an RNN is unrolled into per-step ops fixed to
  the traced length; lengths (a PackedSequence) do not export at all.
- `dynamo=False`, the TorchScript exporter (deprecated): all three become ONNX
  nodes and packed lengths become their `sequence_lens`.

Here, with the current exporter: while a model is exported, each seqmodels layer
whose formulation torch has (`layer.native_kernel()`: LSTM, GRU with
reset_after=True, tanh and relu RNN) is swapped for `OnnxRecurrent`, which calls
one custom op, `seqmodels_export::recurrent`. `translation_table()` tells the
exporter to write that op as one ONNX LSTM/GRU/RNN node per layer (both
directions in one node), with `sequence_lens` from `lengths`: any batch size,
any length, lengths included, and onnxruntime's fused kernels. The layer's own
weights go in unchanged (torch's layout, the `native` engine's views of i2h);
the graph reorders the gates to ONNX's order (LSTM i,f,g,o -> i,o,f,c; GRU
r,z,n -> z,r,h with linear_before_reset=1, torch's formulation), which
onnxruntime folds into constants when it loads the model.

The op has an eager implementation too (torch's kernels on the padded batch,
packed where there are lengths), so a swapped model still runs in PyTorch and
can be compared with the original. Layers without a torch formulation (a swish
RNN, the reset_before GRU, a user's cell) are left as they are and traced
through their own code: their steps unroll at the traced length.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.nn.native import flat_weights

# torch kernel -> (gates, torch's gate blocks in ONNX's order, ONNX operator, activation)
KINDS = {
    "lstm": (4, (0, 3, 1, 2), "LSTM", None),
    "gru": (3, (1, 0, 2), "GRU", None),
    "rnn_tanh": (1, (0,), "RNN", "Tanh"),
    "rnn_relu": (1, (0,), "RNN", "Relu"),
}


@torch.library.custom_op("seqmodels_export::recurrent", mutates_args=())
def recurrent(
    x: Tensor,
    lengths: Tensor | None,
    h0: Tensor | None,
    c0: Tensor | None,
    weights: list[Tensor],
    kind: str,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """x (B, T, I) batch-first -> output (B, T, D*H), h_n (L*D, B, H), c_n (LSTM; else h_n)."""
    fn = getattr(torch._VF, kind)
    B, D = x.shape[0], 2 if bidirectional else 1
    if h0 is None:
        h0 = x.new_zeros(num_layers * D, B, hidden_size)
    if c0 is None:
        c0 = torch.zeros_like(h0)
    has_biases = len(weights) == 4 * num_layers * D
    args = (weights, has_biases, num_layers, 0.0, False, bidirectional)
    if lengths is None:
        res = fn(x, [h0, c0] if kind == "lstm" else h0, *args, True)
        out, h = res[0], res[1]
        c = res[2] if kind == "lstm" else h.clone()
        return out, h, c
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    assert order is not None and unorder is not None
    hx: Any = h0.index_select(1, order)
    if kind == "lstm":
        hx = [hx, c0.index_select(1, order)]
    res = fn(packed.data, packed.batch_sizes, hx, *args)
    out, _ = pad_packed_sequence(
        packed._replace(data=res[0]), batch_first=True, total_length=x.shape[1]
    )
    h = res[1].index_select(1, unorder)
    c = res[2].index_select(1, unorder) if kind == "lstm" else h.clone()
    return out, h, c


@recurrent.register_fake
def _recurrent_shapes(x, lengths, h0, c0, weights, kind, hidden_size, num_layers, bidirectional):
    D = 2 if bidirectional else 1
    state = x.new_empty(num_layers * D, x.shape[0], hidden_size)
    return x.new_empty(x.shape[0], x.shape[1], D * hidden_size), state, torch.empty_like(state)


class OnnxRecurrent(nn.Module):
    """A seqmodels RNN/LSTM/GRU with torch's formulation, as one op the ONNX exporter
    writes as ONNX's own operators. Same call and results as the layer (eval mode)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        kind = layer.native_kernel()  # type: ignore[operator]
        if kind not in KINDS:
            raise ValueError(f"{type(layer).__name__} has no ONNX operator (native_kernel {kind})")
        self.layer = layer  # the parameters stay where they were: a state_dict does not change
        self.kind = kind
        self.hidden_size: int = layer.hidden_size  # type: ignore[assignment]
        self.num_layers: int = layer.num_layers  # type: ignore[assignment]
        self.bidirectional: bool = layer.bidirectional  # type: ignore[assignment]
        self.num_directions = 2 if self.bidirectional else 1
        self.batch_first: bool = layer.batch_first  # type: ignore[assignment]
        self.state_size = 2 if kind == "lstm" else 1  # as the layer it stands for

    def forward(self, x: Tensor, state: Any = None, lengths: Tensor | None = None):
        if not self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = (
            (state if isinstance(state, tuple) else (state, None))
            if state is not None
            else (None, None)
        )
        out, h, c = torch.ops.seqmodels_export.recurrent(
            x,
            lengths,
            h0,
            c0,
            flat_weights(self.layer),
            self.kind,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
        )
        if lengths is not None:  # padded steps are zero, as the layer's (whatever the runtime)
            valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
            out = torch.where(valid[:, :, None], out, 0.0)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, ((h, c) if self.kind == "lstm" else h)


def maps_to_onnx(layer: nn.Module) -> bool:
    """Whether `layer` is a seqmodels recurrent layer that ONNX's operators can run."""
    kernel = getattr(layer, "native_kernel", None)
    return callable(kernel) and hasattr(layer, "cells") and kernel() in KINDS


def recurrent_layers(module: nn.Module) -> list[nn.Module]:
    """The seqmodels recurrent layers in `module` (anything with `cells` and `native_kernel`)."""
    return [
        m
        for m in module.modules()
        if hasattr(m, "cells") and callable(getattr(m, "native_kernel", None))
    ]


def with_onnx_layers(module: nn.Module) -> nn.Module:
    """A copy of `module` with every layer that maps to ONNX's operators swapped for
    OnnxRecurrent; the original is left as it was."""
    module = copy.deepcopy(module)
    targets = [(name, m) for name, m in module.named_modules() if name and maps_to_onnx(m)]
    for name, layer in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, OnnxRecurrent(layer))
    return module


def translation_table() -> dict[Any, Any]:
    """For torch.onnx.export(custom_translation_table=...): the op as ONNX operators.

    Needs onnxscript (the `export` extra), imported here so that seqmodels
    itself imports without it.
    """
    import onnx
    from onnxscript import opset18 as op

    def translate(x, lengths, h0, c0, weights, kind, hidden_size, num_layers, bidirectional):
        gates, order, name, activation = KINDS[kind]
        D = 2 if bidirectional else 1
        per_cell = len(weights) // (num_layers * D)

        def onnx_order(w):  # torch's gate blocks -> ONNX's, along dim 0 (folded to constants)
            if gates == 1:
                return w
            H = hidden_size
            return op.Concat(*[op.Slice(w, [i * H], [(i + 1) * H], [0]) for i in order], axis=0)

        def stack(ws):  # per direction -> (D, ...)
            return op.Concat(*[op.Unsqueeze(w, [0]) for w in ws], axis=0)

        seq = op.Transpose(x, perm=[1, 0, 2])  # ONNX's layout: (T, B, I)
        seq_lens = op.Cast(lengths, to=onnx.TensorProto.INT32) if lengths is not None else None
        direction = "bidirectional" if D == 2 else "forward"
        hs, cs = [], []
        for k in range(num_layers):
            cells = [weights[(k * D + d) * per_cell : (k * D + d + 1) * per_cell] for d in range(D)]
            W = stack([onnx_order(w[0]) for w in cells])
            R = stack([onnx_order(w[1]) for w in cells])
            B = (
                stack([op.Concat(onnx_order(w[2]), onnx_order(w[3]), axis=0) for w in cells])
                if per_cell == 4
                else None
            )
            h_init = op.Slice(h0, [k * D], [(k + 1) * D], [0]) if h0 is not None else None
            if name == "LSTM":
                c_init = op.Slice(c0, [k * D], [(k + 1) * D], [0]) if c0 is not None else None
                Y, Y_h, Y_c = op.LSTM(
                    seq,
                    W,
                    R,
                    B,
                    seq_lens,
                    h_init,
                    c_init,
                    hidden_size=hidden_size,
                    direction=direction,
                )
                cs.append(Y_c)
            elif name == "GRU":
                Y, Y_h = op.GRU(
                    seq,
                    W,
                    R,
                    B,
                    seq_lens,
                    h_init,
                    hidden_size=hidden_size,
                    direction=direction,
                    linear_before_reset=1,
                )
            else:
                Y, Y_h = op.RNN(
                    seq,
                    W,
                    R,
                    B,
                    seq_lens,
                    h_init,
                    hidden_size=hidden_size,
                    direction=direction,
                    activations=[activation] * D,
                )
            hs.append(Y_h)
            # Y (T, D, B, H) -> the next layer's input (T, B, D*H)
            seq = op.Reshape(op.Transpose(Y, perm=[0, 2, 1, 3]), [0, 0, -1])
        out = op.Transpose(seq, perm=[1, 0, 2])
        h = op.Concat(*hs, axis=0) if len(hs) > 1 else hs[0]
        c = (op.Concat(*cs, axis=0) if len(cs) > 1 else cs[0]) if cs else op.Identity(h)
        return out, h, c

    return {torch.ops.seqmodels_export.recurrent.default: translate}
