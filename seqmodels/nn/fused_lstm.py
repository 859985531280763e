"""The built-in LSTM's hand-written recurrence for the fused engine: BPTT written out.

The fused engine runs any cell on autograd (fused.py). For torch's LSTM over
long sequences this recurrence does better: it runs feature-major, computes in
its forward what its backward needs (3 pointwise ops and 2 products per
backward step), and keeps its large buffers from call to call (buffers.py),
which on pixel MNIST's 784 steps matters more than the arithmetic. It beat
the recurrence for any cell on every LSTM shape measured, short sequences
included (scripts/bench_nn.py), so the fused engine runs the LSTM on it.
The backward is not itself differentiable (no double backward), like cuDNN's.

Tried and not kept (docs/speed.md): TorchScript of the per-step pointwise
ops, and torch.compile of one step or of the whole loop; neither was faster
once its own overhead was paid (nor was torch.compile of the feature-major
LSTM step's pointwise ops, the one kernel that would replace its ten).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqmodels.nn import buffers


def run(cell: Any, x: Tensor, state: Any, lengths: Tensor | None):
    """x (T, B, I) -> (hs (T, B, H), (h_n, c_n)); the cell is an exact LSTMCell."""
    B = x.shape[1]
    h0, c0 = cell.init_state(B, x.device, x.dtype) if state is None else state
    last = None if lengths is None else lengths - 1
    # Under autocast (mixed precision) the recurrence runs in fp32 with autocast off:
    # its backward runs outside autocast and would otherwise meet mixed dtypes.
    amp = torch.is_autocast_enabled(x.device.type)
    if amp:
        x, h0, c0 = x.float(), h0.float(), c0.float()
    with torch.autocast(x.device.type, enabled=False):
        args = (x, cell.i2h.weight, cell.i2h.bias, h0, c0, last)
        if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in args):
            hs, h_n, c_n = LSTMRecurrence.apply(*args)
        else:  # nothing to differentiate: no need to store the backward's factors
            hs, h_n, c_n = lstm_inference(*args)
    return hs, (h_n, c_n)


# ---------------------------------------------------------------- LSTM
# The LSTM runs feature-major: every per-step tensor is (features, B), so each gate of
# the product's output (4H, B) is one contiguous (H, B) block and every pointwise op
# below reads and writes whole blocks (batch-major, a gate is a strided column slice,
# and torch's pointwise ops run several times slower on those). Its rows are ordered
# o, i, f, g (torch's are i, f, g, o), which puts the three sigmoid gates side by side
# and lines up the pairs that one op can multiply at once: [i, f] * [g, c_{t-1}].
# The bias rides in the product as a column against a row of ones in [x_t; 1; h_{t-1}]:
# no per-step bias copy, and the weight gradient's column there is the bias gradient.


def _lstm_weight(weight: Tensor, bias: Tensor | None) -> Tensor:
    """i2h's weight (4H, I+H) and bias -> (4H, I+1+H): columns [W_ih | b | W_hh], rows o, i, f, g.

    o, i, f, g is torch's i, f, g, o rolled by one gate (roll back with -H).
    """
    H, I = weight.shape[0] // 4, weight.shape[1] - weight.shape[0] // 4  # noqa: E741
    b = weight.new_zeros(4 * H, 1) if bias is None else bias.unsqueeze(1)
    return torch.cat((weight[:, :I], b, weight[:, I:]), 1).roll(H, 0)


def _lstm_steps(w: Tensor, xh: Tensor, c0: Tensor, ends: dict, R: Tensor | None):
    """The forward loop over xh (T+1, I+1+H, B), whose rows [x_t; 1] are filled and whose
    h rows receive h_t (xh[t+1]); c0 (H, B). Returns (h_n, c_n), (H, B) each.

    With R (T, 6, H, B), each step also stores what its backward needs, computed here
    while it is in cache: R[t] = [P_o, P_i, P_f, P_g, f, Q], where dz_gate = P_gate * dc
    (dh for o), Q = o (1 - tanh^2 c) carries dh into dc, and f carries dc back a step.
    Each is one op from values at hand: P_o = o (1 - o) tanh c = h - h o,
    [P_i, P_f] = [i g, f c_{t-1}] (1 - [i, f]), P_g = i (1 - g^2) = i - (i g) g.
    `ends` {t: (1, B) mask} marks where sequences end (lengths): their state is kept.
    """
    T = xh.shape[0] - 1
    H, B = c0.shape
    J = xh.shape[1] - H
    z = xh.new_empty(4 * H, B)  # pre-activations o, i, f, g
    z_ofi, z_g = z[: 3 * H].view(3, H, B), z[3 * H :]
    # per step parity: [tanh c_t, g_t, c_{t-1}]; a step's c_t is the next one's c_{t-1}.
    # Every view the loop uses is made here, once (indexing costs ~1 us a view).
    x = xh.new_empty(2, 3, H, B)
    x[0, 2] = c0
    tanh_c, g, c_prev, g_c = ([x[p, s] for p in (0, 1)] for s in (0, 1, 2, slice(1, None)))
    prod = xh.new_empty(2, H, B)  # [i g, f c_{t-1}]
    ig, fc = prod
    if R is None:
        a = xh.new_empty(3, H, B)
        ofi, o, i, i_f = (a,) * T, (a[0],) * T, (a[1],) * T, (a[1:],) * T
    else:  # sigmoid writes o, i, f where P_f, P_g, f go
        ofi, o, i, i_f = (R[:, s].unbind(0) for s in (slice(2, 5), 2, 3, slice(3, 5)))
        P_o, P_if, P_g, Q = (R[:, s].unbind(0) for s in (0, slice(1, 3), 3, 5))
    xs, hs = xh.unbind(0), xh[1:, J:].unbind(0)
    h_n, c_n = xh.new_empty(H, B), xh.new_empty(H, B)  # filled at each sequence's end
    for t in range(T):
        k, n = t & 1, (t + 1) & 1
        torch.mm(w, xs[t], out=z)
        torch.sigmoid(z_ofi, out=ofi[t])
        torch.tanh(z_g, out=g[k])
        torch.mul(i_f[t], g_c[k], out=prod)
        c = torch.add(ig, fc, out=c_prev[n])
        tc = torch.tanh(c, out=tanh_c[k])
        h = torch.mul(o[t], tc, out=hs[t])
        if R is not None:
            torch.addcmul(o[t], h, tc, value=-1, out=Q[t])
            torch.addcmul(h, h, o[t], value=-1, out=P_o[t])
            torch.addcmul(prod, prod, i_f[t], value=-1, out=P_if[t])  # overwrites o
            torch.addcmul(i[t], ig, g[k], value=-1, out=P_g[t])  # overwrites i
        if t in ends:
            torch.where(ends[t], h, h_n, out=h_n)
            torch.where(ends[t], c, c_n, out=c_n)
    if not ends:  # h_n apart from hs, whose last step it is (as torch.nn returns them)
        h_n, c_n = xh[T, J:].clone(), c_prev[T & 1]
    return h_n, c_n


def _lstm_input(x: Tensor, h0: Tensor, H: int) -> Tensor:
    """xh (T+1, I+1+H, B) with [x_t; 1] in place and h0 in xh[0]'s h rows."""
    T, B, I = x.shape  # noqa: E741
    xh = buffers.empty((T + 1, I + 1 + H, B), x)
    xh[:T, :I] = x.transpose(1, 2)
    xh[:T, I] = 1
    xh[0, I + 1 :] = h0.t()
    return xh


def _ends(last: Tensor | None) -> dict:
    """{step: (1, B) mask of the sequences whose last valid step it is} (empty without lengths)."""
    if last is None:
        return {}
    return {t: (last == t).view(1, -1) for t in last.unique().tolist()}


def lstm_inference(
    x: Tensor, weight: Tensor, bias: Tensor | None, h0: Tensor, c0: Tensor, last: Tensor | None
):
    """LSTMRecurrence's forward without autograd (nothing is stored for a backward)."""
    xh = _lstm_input(x, h0, h0.shape[-1])
    h_n, c_n = _lstm_steps(_lstm_weight(weight, bias), xh, c0.t(), _ends(last), None)
    return xh[1:, x.shape[-1] + 1 :].transpose(1, 2), h_n.t(), c_n.t()


class LSTMRecurrence(torch.autograd.Function):
    """(x (T,B,I), weight (4H,I+H), bias (4H) or None, h0, c0 (B,H), last (B,) or None)
    -> hs (T,B,H), h_n, c_n (B,H).

    weight and bias are the cell's i2h (gates i, f, g, o); h_n and c_n are the
    states after step last[b] of each sequence (T-1 when last is None). hs is a
    view of a feature-major buffer (strides (.., 1, B)).

    Per step, forward: one product and 10 pointwise ops (see _lstm_steps);
    backward: 3 pointwise ops and two products, dh = W_hh^T dz and the weight
    gradient's share dz [x_t; 1; h_{t-1}]^T (accumulated step by step: the
    feature-major layout has no single (4H, T*B) matrix to take it in one GEMM,
    and a step's product runs as fast per flop as one over many steps would).
    Products are torch's matmul, which takes out= (each step's output lands in
    place); on the Intel CPU measured it matched or beat oneDNN's on these shapes
    (not measured on AMD CPUs, where the measurements (docs/speed.md) found MKL behind oneDNN).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        h0: Tensor,
        c0: Tensor,
        last: Tensor | None,
    ):
        ctx.set_materialize_grads(False)  # an unused output (hs, often) has no gradient to add
        T, B, I = x.shape  # noqa: E741
        H = h0.shape[-1]
        w = _lstm_weight(weight, bias)
        xh = _lstm_input(x, h0, H)
        R = buffers.empty((T, 6, H, B), x)
        ends = _ends(last)
        h_n, c_n = _lstm_steps(w, xh, c0.t(), ends, R)
        ctx.save_for_backward(xh, R, w)
        ctx.ends, ctx.has_bias = ends, bias is not None
        return xh[1:, I + 1 :].transpose(1, 2), h_n.t(), c_n.t()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None):
        xh, R, w = ctx.saved_tensors
        T, _, H, B = R.shape
        J = xh.shape[1] - H
        I = J - 1  # noqa: E741
        need_dx = ctx.needs_input_grad[0]
        # [dx_t; d1; dh_{t-1}] = W^T dz_t in one product (only dh without dx)
        back = (w if need_dx else w[:, J:]).t().contiguous()
        dxh = buffers.empty((T, J + H, B), xh) if need_dx else None
        e = xh.new_empty(5, H, B)  # [dz_o, dz_i, dz_f, dz_g, dc_{t-1}]
        dz, dz_o, dz_ifg_dc, dc_next = e[:4].view(4 * H, B), e[0], e[1:], e[4]
        dc = xh.new_empty(H, B)
        zeros = xh.new_zeros(H, B)
        dh_nT = zeros if dh_n is None else dh_n.t()
        dc_nT = zeros if dc_n is None else dc_n.t()
        # with lengths: where each sequence's final-state gradient enters the loop
        inject = {t: m.to(xh.dtype) for t, m in ctx.ends.items()}
        dh = zeros if inject else dh_nT
        dc_next.copy_(zeros if inject else dc_nT)
        dw = xh.new_zeros(4 * H, J + H)
        P_o, P_ifg_f, Q = R[:, 0].unbind(0), R[:, 1:5].unbind(0), R[:, 5].unbind(0)
        xh_t = xh[:T].transpose(1, 2).unbind(0)  # [x_t; 1; h_{t-1}]^T, (B, J+H)
        if dxh is not None:
            dxh_t, dh_t = dxh.unbind(0), dxh[:, J:].unbind(0)
        for t in range(T - 1, -1, -1):
            if dhs is not None:
                dh = dh + dhs[t].t()
            if t in inject:
                dh = torch.addcmul(dh, dh_nT, inject[t])
                torch.addcmul(dc_next, dc_nT, inject[t], out=dc_next)
            torch.addcmul(dc_next, dh, Q[t], out=dc)
            torch.mul(P_ifg_f[t], dc, out=dz_ifg_dc)  # dz_i, dz_f, dz_g and dc f
            torch.mul(P_o[t], dh, out=dz_o)
            if dxh is None:
                dh = torch.mm(back, dz)
            else:
                torch.mm(back, dz, out=dxh_t[t])
                dh = dh_t[t]
            dw.addmm_(dz, xh_t[t])
        dw = dw.roll(-H, 0)  # rows o, i, f, g -> torch's i, f, g, o
        db = dw[:, I].clone() if ctx.has_bias else None
        dw = torch.cat((dw[:, :I], dw[:, J:]), 1)
        dx = None if dxh is None else dxh[:, :I].transpose(1, 2)
        return dx, dw, db, dh.t(), dc_next.t(), None
