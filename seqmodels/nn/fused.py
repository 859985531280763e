"""The fused engine's recurrences: forward loop plus hand-written BPTT (autograd.Function).

What depends on h must be unrolled step by step; everything else is done for
all steps at once:

    forward:  per step one product with the weight (gemm.StepLinear: oneDNN's
              matmul on CPU) and a few pointwise ops
    backward: per step one product with the transposed weight and a few
              pointwise ops; the weight gradient sum_t dz_t^T [x_t, h_{t-1}] is
              ONE GEMM over all T*B rows after the loop

Autograd over a Python loop would instead run T small weight-gradient GEMMs and
record ~10 graph nodes per step; this is what cuDNN/oneDNN do, in Python.

Shapes are time-major, (T, B, features), so every step's slice is contiguous.
The backward is not itself differentiable (no double backward), like cuDNN's.

Tried and not kept (README, "Speed"): TorchScript of the per-step pointwise
ops, and torch.compile of one step or of the whole loop; neither was faster
once its own overhead was paid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqmodels.nn.gemm import StepLinear


def _prev(seq: Tensor, first: Tensor) -> Tensor:
    """(T, B, H) states -> the states before each step: [first, seq[0], ..., seq[T-2]]."""
    return torch.cat((first.unsqueeze(0), seq[:-1]), 0)


def _sum_outer(dg: Tensor, inp: Tensor) -> Tensor:
    """sum over t and b of dg^T inp: (T, B, G) x (T, B, K) -> (G, K), one GEMM."""
    return dg.reshape(-1, dg.shape[-1]).t() @ inp.reshape(-1, inp.shape[-1])


def _final_state_grads(last: Tensor | None, dh_n: Tensor):
    """Where the final state's gradient enters the backward loop: {step: (B, 1) mask}.

    Without lengths every sequence ends at step T-1, and the loop simply starts
    from (dh_n, dc_n); with lengths, sequence b ends at step last[b].
    """
    if last is None:
        return {}
    return {t: (last == t).to(dh_n.dtype).unsqueeze(1) for t in last.unique().tolist()}


class LSTMRecurrence(torch.autograd.Function):
    """(x (T,B,I), weight (4H,I+H), bias (4H) or None, h0, c0 (B,H), last (B,) or None)
    -> hs (T,B,H), h_n, c_n (B,H).

    weight and bias are the cell's i2h (gates i, f, g, o); h_n and c_n are the
    states after step last[b] of each sequence (T-1 when last is None).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, h0: Tensor,
                c0: Tensor, last: Tensor | None):  # fmt: skip
        T, B, I = x.shape  # noqa: E741
        H = h0.shape[-1]
        # tanh(z) = 2 sigmoid(2z) - 1: with the g rows doubled, one sigmoid (fused into
        # the product) gives i, f, o and v = sigmoid(2 z_g) = (1 + g) / 2. torch's CPU
        # tanh costs several times sigmoid's per element.
        scale = weight.new_ones(4 * H, 1)
        scale[2 * H : 3 * H] = 2
        b = None if bias is None else bias * scale[:, 0]
        step = StepLinear(weight * scale, b, B, activation="sigmoid")
        # xh[t] = [x_t, h_{t-1}]: each step's product reads one contiguous block and
        # writes h_t into the next; the backward's weight gradient is one GEMM over it.
        xh = x.new_empty(T + 1, B, I + H)
        xh[:T, :, :I] = x
        xh[0, :, I:] = h0
        # The cell state is carried as m = -2c, so that tanh(c) = 1 - 2 sigmoid(m).
        m = x.new_empty(T + 1, B, H)
        torch.mul(c0, -2, out=m[0])
        s = x.new_empty(T, B, H)  # sigmoid(m_t)
        xs, hs, ms, ss = xh.unbind(0), xh[1:, :, I:].unbind(0), m.unbind(0), s.unbind(0)
        acts = []
        for t in range(T):
            a = step(xs[t])
            acts.append(a)
            i, f, v, o = a.split(H, 1)
            # c_t = f c_{t-1} + i g with g = 2v - 1, so m_t = f m_{t-1} - 4 i v + 2 i
            m_t = torch.addcmul(torch.mul(f, ms[t]), i, v, value=-4)
            torch.add(m_t, i, alpha=2, out=ms[t + 1])
            torch.sigmoid(ms[t + 1], out=ss[t])
            torch.addcmul(o, o, ss[t], value=-2, out=hs[t])  # h_t = o tanh(c_t)
        if last is None:
            h_n, m_n = xh[T, :, I:].clone(), m[T]
        else:
            seq = torch.arange(B, device=x.device)
            h_n, m_n = xh[last + 1, seq, I:], m[last + 1, seq]
        # the step activations as separate tensors (stacking them would cost a copy);
        # saved like the rest so that autograd frees them after the backward
        ctx.save_for_backward(xh, weight, m, s, *acts)
        ctx.last, ctx.has_bias = last, bias is not None
        return xh[1:, :, I:], h_n, m_n.mul(-0.5)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor, dh_n: Tensor, dc_n: Tensor):
        xh, weight, m, s, *acts = ctx.saved_tensors
        T, B, H = s.shape
        I = xh.shape[-1] - H  # noqa: E741
        need_dx = ctx.needs_input_grad[0]
        # [dx_t | dh_{t-1}] = dz_t W in one product per step (only dh without dx)
        back = StepLinear((weight if need_dx else weight[:, I:]).t(), None, B)
        dz = xh.new_empty(T, B, 4 * H)  # gradient of the pre-activations z = [x, h] W^T + b
        dz_i, dz_f, dz_g, dz_o = (q.unbind(0) for q in dz.view(T, B, 4, H).unbind(2))
        dx = xh.new_empty(T, B, I) if need_dx else None
        inject = _final_state_grads(ctx.last, dh_n)
        if inject:
            dh_next, dc_next = torch.zeros_like(dh_n), torch.zeros_like(dc_n)
        else:
            dh_next, dc_next = dh_n, dc_n
        one, neg_one, zero = xh.new_ones(()), xh.new_full((), -1.0), xh.new_zeros(())
        hs, ms, ss = xh[1:, :, I:].unbind(0), m.unbind(0), s.unbind(0)
        for t in range(T - 1, -1, -1):
            a = acts[t]
            i, f, v, o = a.split(H, 1)
            p_i, p_f, p_v, p_o = torch.addcmul(a, a, a, value=-1).split(H, 1)  # a (1 - a)
            dh = torch.add(dhs[t], dh_next)
            if t in inject:
                dh = torch.addcmul(dh, dh_n, inject[t])
                dc_next = torch.addcmul(dc_next, dc_n, inject[t])
            tanh_c = torch.add(one, ss[t], alpha=-2)
            torch.mul(torch.mul(p_o, tanh_c), dh, out=dz_o[t])
            # dc = dc_{t+1} f_{t+1} + dh o (1 - tanh^2 c), and o tanh(c) = h
            dc = torch.addcmul(dc_next, dh, torch.addcmul(o, hs[t], tanh_c, value=-1))
            torch.mul(torch.mul(p_i, torch.add(neg_one, v, alpha=2)), dc, out=dz_i[t])  # g = 2v-1
            torch.addcmul(zero, torch.mul(p_f, ms[t]), dc, value=-0.5, out=dz_f[t])  # c = -m/2
            torch.addcmul(zero, torch.mul(p_v, i), dc, value=4, out=dz_g[t])  # 1-g^2 = 4v(1-v)
            dc_next = torch.mul(dc, f)
            d = back(dz[t])
            if dx is not None:
                dx[t] = d[:, :I]
                dh_next = d[:, I:]
            else:
                dh_next = d
        dw = _sum_outer(dz, xh[:T])  # [dW_ih | dW_hh] in one GEMM
        db = dz.view(T * B, 4 * H).sum(0) if ctx.has_bias else None
        return dx, dw, db, dh_next, dc_next, None


class GRURecurrence(torch.autograd.Function):
    """(gx (T,B,3H), h0 (B,H), w_hh (3H,H), b_hn (H) or None, reset_after) -> hs (T,B,H)."""

    @staticmethod
    def forward(
        ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, b_hn: Tensor | None, reset_after: bool
    ):
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        hs = gx.new_empty(T, B, H)
        rz = gx.new_empty(T, B, 2 * H)
        ns = gx.new_empty(T, B, H)
        aux = gx.new_empty(T, B, H)  # reset_after: W_hn h + b_hn; else r * h
        h = h0
        if reset_after:
            b = None if b_hn is None else torch.cat((b_hn.new_zeros(2 * H), b_hn))
            step = StepLinear(w_hh, b, B)  # gh = h W_hh^T + [0, 0, b_hn]
            for t in range(T):
                gh = step(h)
                torch.sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H], out=rz[t])
                aux[t] = gh[:, 2 * H :]
                r, z = rz[t, :, :H], rz[t, :, H:]
                n = torch.tanh(torch.addcmul(gx[t, :, 2 * H :], r, aux[t]), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        else:
            step_rz, step_n = StepLinear(w_hh[: 2 * H], None, B), StepLinear(w_hh[2 * H :], None, B)
            for t in range(T):
                torch.sigmoid(torch.add(gx[t, :, : 2 * H], step_rz(h)), out=rz[t])
                r, z = rz[t, :, :H], rz[t, :, H:]
                rh = torch.mul(r, h, out=aux[t])
                n = torch.tanh(torch.add(gx[t, :, 2 * H :], step_n(rh)), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        ctx.reset_after = reset_after
        ctx.has_b_hn = b_hn is not None
        ctx.save_for_backward(hs, rz, ns, aux, h0, w_hh)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor):
        hs, rz, ns, aux, h0, w_hh = ctx.saved_tensors
        T, B, H = hs.shape
        hprev = _prev(hs, h0)
        r, z = rz[..., :H], rz[..., H:]
        p1 = (1 - z) * (1 - ns * ns)  # d n_pre / d h_t
        dh_next = torch.zeros_like(h0)
        if ctx.reset_after:
            # every per-step gradient is dh_t times a factor known before the loop:
            # d gh = dh * [p1*aux*r(1-r), (h_prev-n)*z(1-z), p1*r]
            k = torch.stack((p1 * aux * r * (1 - r), (hprev - ns) * z * (1 - z), p1 * r), -2)
            dgh = rz.new_empty(T, B, 3 * H)  # gradient of gh = W_hh h (+ b_hn)
            dgh3 = dgh.view(T, B, 3, H)
            dh_all = torch.empty_like(hs)
            back = StepLinear(w_hh.t(), None, B)
            for t in range(T - 1, -1, -1):
                dh = torch.add(dhs[t], dh_next, out=dh_all[t])
                torch.mul(k[t], dh.unsqueeze(-2), out=dgh3[t])
                dh_next = torch.addcmul(back(dgh[t]), dh, z[t])
            dw = _sum_outer(dgh, hprev)
            db_hn = dgh[..., 2 * H :].sum((0, 1)) if ctx.has_b_hn else None
            dgx = torch.cat((dgh[..., : 2 * H], dh_all * p1), -1)  # n: before r scales it
        else:
            q_r = hprev * r * (1 - r)
            q_z = (hprev - ns) * z * (1 - z)
            back_rz = StepLinear(w_hh[: 2 * H].t(), None, B)
            back_n = StepLinear(w_hh[2 * H :].t(), None, B)
            dgx = rz.new_empty(T, B, 3 * H)
            for t in range(T - 1, -1, -1):
                dh = dhs[t] + dh_next
                d = dgx[t]
                dn = torch.mul(dh, p1[t], out=d[:, 2 * H :])
                drh = back_n(dn)
                torch.mul(drh, q_r[t], out=d[:, :H])
                torch.mul(dh, q_z[t], out=d[:, H : 2 * H])
                dh_next = torch.add(torch.addcmul(dh * z[t], drh, r[t]), back_rz(d[:, : 2 * H]))
            dw = torch.cat(
                (_sum_outer(dgx[..., : 2 * H], hprev), _sum_outer(dgx[..., 2 * H :], aux))
            )
            db_hn = None
        return dgx, dh_next, dw, db_hn, None


class RNNRecurrence(torch.autograd.Function):
    """(gx (T,B,H), h0 (B,H), w_hh (H,H), nonlinearity) -> hs (T,B,H)."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str):
        T, B = gx.shape[0], gx.shape[1]
        step = StepLinear(w_hh, None, B)
        hs = torch.empty_like(gx)
        pre = torch.empty_like(gx) if nonlinearity == "swish" else None  # swish' needs the input
        h = h0
        for t in range(T):
            p = torch.add(gx[t], step(h), out=pre[t] if pre is not None else None)
            if nonlinearity == "tanh":
                h = torch.tanh(p, out=hs[t])
            elif nonlinearity == "relu":
                h = torch.relu(p)
                hs[t] = h
            else:
                h = torch.mul(p, torch.sigmoid(p), out=hs[t])
        ctx.nonlinearity = nonlinearity
        ctx.save_for_backward(hs, pre, h0, w_hh)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor):
        hs, pre, h0, w_hh = ctx.saved_tensors
        if ctx.nonlinearity == "tanh":
            k = 1 - hs * hs
        elif ctx.nonlinearity == "relu":
            k = (hs > 0).to(hs.dtype)
        else:  # d/dp p*s(p) = s * (1 + p * (1 - s))
            s = torch.sigmoid(pre)
            k = s * (1 + pre * (1 - s))
        back = StepLinear(w_hh.t(), None, hs.shape[1])
        dgx = torch.empty_like(hs)
        dh_next = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            d = torch.mul(dhs[t] + dh_next, k[t], out=dgx[t])
            dh_next = back(d)
        return dgx, dh_next, _sum_outer(dgx, _prev(hs, h0)), None
