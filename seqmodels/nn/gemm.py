"""Matrix products of the fused engine: oneDNN's matmul on CPU where torch ships it.

A recurrence multiplies by the same weight at every step. On CPU torch's fp32
matmul runs MKL, whose kernels can be markedly slower than oneDNN's on a
recurrence's small shapes, on AMD CPUs especially (`python scripts/bench_nn.py`
prints both GEMM peaks; the README has the numbers). torch ships oneDNN's
matmul as `torch.ops.mkldnn._linear_pointwise`, the op torch.compile's CPU
backend emits for linear layers; `StepLinear` uses it where it is there and
pays off, and torch's own matmul otherwise. Both give the same numbers to
fp32 rounding.

`StepLinear(weight, bias, rows)` prepares a weight once (oneDNN reorders it
into its blocked layout) for many products act(x @ weight.T + bias).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

# oneDNN's call costs more than torch's; it pays off only for products of a few
# million multiply-adds and up (small steps stay on torch's matmul).
ONEDNN_MIN_MACS = 1 << 21

# Off switch, e.g. to compare the two paths: seqmodels.nn.gemm.USE_ONEDNN = False
USE_ONEDNN = True


@functools.cache
def onednn_available() -> bool:
    """True when this torch build has oneDNN's matmul op and it gives torch's numbers."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        lin = torch.ops.mkldnn._linear_pointwise.default
        pack = torch.ops.mkldnn._reorder_linear_weight.default
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((5, 24), (40, 24), (40,)))
        y = lin(x, pack(w, 5), b, "sigmoid", [], "")
        return bool(torch.allclose(y, torch.sigmoid(torch.addmm(b, x, w.t())), atol=1e-5))
    except (AttributeError, RuntimeError):  # no such op in this build, or it refused
        return False


def use_onednn(weight: Tensor, rows: int) -> bool:
    """Whether x @ weight.T for an x of `rows` rows (and weight's dtype) should run on oneDNN."""
    return (
        USE_ONEDNN
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and rows * weight.shape[0] * weight.shape[1] >= ONEDNN_MIN_MACS
        and onednn_available()
    )


class StepLinear:
    """y = act(x @ weight.T + bias) for many x of `rows` rows with one weight (N, K).

    `activation` is None or "sigmoid" (fused into oneDNN's product as a post-op).
    The weight is read when the object is made: make a new one when it changes.
    """

    def __init__(
        self, weight: Tensor, bias: Tensor | None, rows: int, activation: str | None = None
    ):
        self.onednn = use_onednn(weight, rows)
        self.activation = activation
        self.bias = bias
        if self.onednn:
            # a dense weight: a strided view would send oneDNN down a slow path (seconds)
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows)
        else:
            self.weight_t = weight.t()

    def __call__(self, x: Tensor) -> Tensor:
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise.default(
                x.contiguous(), self.weight, self.bias, self.activation or "none", [], ""
            )
        y = x @ self.weight_t if self.bias is None else torch.addmm(self.bias, x, self.weight_t)
        return y.sigmoid_() if self.activation == "sigmoid" else y


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(x, weight, bias) on oneDNN where `use_onednn` says so (x of any rank).

    For the fused engine's input projection, all steps in one product. Differentiable
    like F.linear, twice included: a backward that builds a graph runs torch's ops.
    """
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if (
        use_onednn(weight, rows)
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled(x.device.type)  # autocast casts F.linear's inputs
    ):
        y = _OneDNNLinear.apply(x.reshape(rows, x.shape[-1]), weight.contiguous(), bias)
        return y.view(*x.shape[:-1], weight.shape[0])
    return torch.nn.functional.linear(x, weight, bias)


class _OneDNNLinear(torch.autograd.Function):
    """x (N, K) @ weight (M, K).T + bias on oneDNN; the backward's dx on oneDNN too."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx: Any, dy: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        dx = dw = db = None
        if need_x:
            if torch.is_grad_enabled():  # double backward: ops autograd can differentiate
                dx = dy @ weight
            else:  # weight.t() is a dense transposed view, which oneDNN takes as it is
                dx = torch.ops.mkldnn._linear_pointwise(
                    dy.contiguous(), weight.t(), None, "none", [], ""
                )
        if need_w:
            dw = dy.t() @ x
        if need_b and ctx.has_bias:
            db = dy.sum(0)
        return dx, dw, db
