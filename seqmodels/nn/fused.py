"""The fused engine's recurrences: forward loop plus hand-written BPTT (autograd.Function).

The input projection gx = x W_ih^T + b of every step is computed outside, in
one GEMM, by the caller. What is left depends on h and must be unrolled:

    forward:  per step one GEMM h_{t-1} W_hh^T (B x H x G*H) + the gate pointwise
    backward: per step one GEMM dgates_t W_hh (B x G*H x H) + a few pointwise ops;
              every factor that does not depend on the incoming gradient is
              computed for all steps at once before the loop, and
              dW_hh = sum_t dgates_t^T h_{t-1} is ONE big GEMM over all T*B rows
              after it; dgx (-> dW_ih, dx, db) goes back to autograd as one tensor.

Autograd over a Python loop would instead run T small weight-gradient GEMMs and
record ~10 graph nodes per step; this is what cuDNN/oneDNN do, in Python.

Tensors carry a leading direction dim D so both directions of a layer could
share one loop with batched GEMMs (bmm); on CPU that measured slower than one
direction at a time, so the engine passes D=1 (tests check D=2 too). Shapes: gx (T, D, B, G*H), h0/c0 (D, B, H),
w_hh (D, G*H, H), b_hn (D, H); time-major so every step's slice is contiguous.
The backward is not itself differentiable (no double backward), like cuDNN's.

torch.compile and TorchScript of the per-step pointwise were measured on this
CPU and not kept: compile took ~40 s for no gain, TorchScript was 2x slower.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _prev(seq: Tensor, first: Tensor) -> Tensor:
    """(T, D, B, H) states -> the states before each step: [first, seq[0], ..., seq[T-2]]."""
    return torch.cat((first.unsqueeze(0), seq[:-1]), 0)


def _sum_outer(dg: Tensor, inp: Tensor) -> Tensor:
    """sum over t and b of dg^T inp, one GEMM per direction: (T,D,B,G) x (T,D,B,K) -> (D,G,K)."""
    D = dg.shape[1]
    dg2 = dg.transpose(0, 1).reshape(D, -1, dg.shape[-1])
    inp2 = inp.transpose(0, 1).reshape(D, -1, inp.shape[-1])
    return torch.bmm(dg2.transpose(1, 2), inp2)


class LSTMRecurrence(torch.autograd.Function):
    """(gx (T,D,B,4H), h0, c0 (D,B,H), w_hh (D,4H,H)) -> (hs, cs) each (T, D, B, H)."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor):
        T, H = gx.shape[0], h0.shape[-1]
        w_t = w_hh.transpose(1, 2)
        acts = torch.empty_like(gx)  # sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) per step
        hs, cs = gx.new_empty(T, *h0.shape), gx.new_empty(T, *h0.shape)
        h, c = h0, c0
        for t in range(T):
            a = acts[t]
            gates = torch.baddbmm(gx[t], h, w_t)
            torch.sigmoid(gates, out=a)  # one call for i, f, o (g is overwritten next)
            g = torch.tanh(gates[..., 2 * H : 3 * H], out=a[..., 2 * H : 3 * H])
            c = torch.addcmul(a[..., H : 2 * H] * c, a[..., :H], g, out=cs[t])
            h = torch.mul(a[..., 3 * H :], torch.tanh(c), out=hs[t])
        ctx.save_for_backward(acts, hs, cs, h0, c0, w_hh)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor, dcs: Tensor):
        acts, hs, cs, h0, c0, w_hh = ctx.saved_tensors
        T, D, B, H = hs.shape
        i, f, g, o = acts.chunk(4, -1)
        # gradient-independent factors for all steps at once (a few big ops, not ~15 per step)
        tc = torch.tanh(cs)
        a_c = o * (1 - tc * tc)  # d c_t / d h_t through h = o * tanh(c)
        k_i, k_f, k_g = g * i * (1 - i), _prev(cs, c0) * f * (1 - f), i * (1 - g * g)
        k_o = tc * o * (1 - o)
        dG = torch.empty_like(acts)
        dh_next = torch.zeros_like(h0)
        dc_next = torch.zeros_like(c0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh_next
            dc = torch.addcmul(dcs[t] + dc_next, dh, a_c[t])
            d = dG[t]
            # four plain muls into slices: one broadcast mul into a strided (.., 3, H)
            # view measured ~40x slower per step
            torch.mul(k_i[t], dc, out=d[..., :H])
            torch.mul(k_f[t], dc, out=d[..., H : 2 * H])
            torch.mul(k_g[t], dc, out=d[..., 2 * H : 3 * H])
            torch.mul(k_o[t], dh, out=d[..., 3 * H :])
            dc_next = dc * f[t]
            dh_next = torch.bmm(d, w_hh)
        return dG, dh_next, dc_next, _sum_outer(dG, _prev(hs, h0))


class GRURecurrence(torch.autograd.Function):
    """(gx (T,D,B,3H), h0 (D,B,H), w_hh (D,3H,H), b_hn (D,H) or None, reset_after) -> hs."""

    @staticmethod
    def forward(
        ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, b_hn: Tensor | None, reset_after: bool
    ):
        T, H = gx.shape[0], h0.shape[-1]
        hs = gx.new_empty(T, *h0.shape)
        rz = gx.new_empty(T, *h0.shape[:-1], 2 * H)
        ns = gx.new_empty(T, *h0.shape)
        aux = gx.new_empty(T, *h0.shape)  # reset_after: W_hn h + b_hn; else r * h
        h = h0
        if reset_after:
            w_t = w_hh.transpose(1, 2)
            b = None if b_hn is None else b_hn.unsqueeze(1)
            for t in range(T):
                gh = torch.bmm(h, w_t)
                torch.sigmoid(gx[t, ..., : 2 * H] + gh[..., : 2 * H], out=rz[t])
                if b is None:
                    aux[t] = gh[..., 2 * H :]
                else:
                    torch.add(gh[..., 2 * H :], b, out=aux[t])
                r, z = rz[t, ..., :H], rz[t, ..., H:]
                n = torch.tanh(torch.addcmul(gx[t, ..., 2 * H :], r, aux[t]), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        else:
            w_rz, w_n = w_hh[:, : 2 * H].transpose(1, 2), w_hh[:, 2 * H :].transpose(1, 2)
            for t in range(T):
                torch.sigmoid(torch.baddbmm(gx[t, ..., : 2 * H], h, w_rz), out=rz[t])
                r, z = rz[t, ..., :H], rz[t, ..., H:]
                rh = torch.mul(r, h, out=aux[t])
                n = torch.tanh(torch.baddbmm(gx[t, ..., 2 * H :], rh, w_n), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        ctx.reset_after = reset_after
        ctx.has_b_hn = b_hn is not None
        ctx.save_for_backward(hs, rz, ns, aux, h0, w_hh)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor):
        hs, rz, ns, aux, h0, w_hh = ctx.saved_tensors
        T, D, B, H = hs.shape
        hprev = _prev(hs, h0)
        r, z = rz[..., :H], rz[..., H:]
        p1 = (1 - z) * (1 - ns * ns)  # d n_pre / d h_t
        dh_next = torch.zeros_like(h0)
        if ctx.reset_after:
            # every per-step gradient is dh_t times a factor known before the loop:
            # d gh = dh * [p1*aux*r(1-r), (h_prev-n)*z(1-z), p1*r]
            k = torch.stack((p1 * aux * r * (1 - r), (hprev - ns) * z * (1 - z), p1 * r), -2)
            dgh = rz.new_empty(T, D, B, 3 * H)  # gradient of gh = W_hh h (+ b_hn)
            dgh4 = dgh.view(T, D, B, 3, H)
            dh_all = torch.empty_like(hs)
            for t in range(T - 1, -1, -1):
                dh = torch.add(dhs[t], dh_next, out=dh_all[t])
                torch.mul(k[t], dh.unsqueeze(-2), out=dgh4[t])
                dh_next = torch.baddbmm(dh * z[t], dgh[t], w_hh)
            dw = _sum_outer(dgh, hprev)
            db_hn = dgh[..., 2 * H :].sum((0, 2)) if ctx.has_b_hn else None
            dgx = torch.cat((dgh[..., : 2 * H], dh_all * p1), -1)  # n: before r scales it
        else:
            q_r = hprev * r * (1 - r)
            q_z = (hprev - ns) * z * (1 - z)
            w_rz, w_n = w_hh[:, : 2 * H], w_hh[:, 2 * H :]
            dgx = rz.new_empty(T, D, B, 3 * H)
            for t in range(T - 1, -1, -1):
                dh = dhs[t] + dh_next
                d = dgx[t]
                dn = torch.mul(dh, p1[t], out=d[..., 2 * H :])
                drh = torch.bmm(dn, w_n)
                torch.mul(drh, q_r[t], out=d[..., :H])
                torch.mul(dh, q_z[t], out=d[..., H : 2 * H])
                dh_next = torch.baddbmm(torch.addcmul(dh * z[t], drh, r[t]), d[..., : 2 * H], w_rz)
            dw = torch.cat(
                (_sum_outer(dgx[..., : 2 * H], hprev), _sum_outer(dgx[..., 2 * H :], aux)), 1
            )
            db_hn = None
        return dgx, dh_next, dw, db_hn, None


class RNNRecurrence(torch.autograd.Function):
    """(gx (T,D,B,H), h0 (D,B,H), w_hh (D,H,H), nonlinearity) -> hs (T, D, B, H)."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str):
        T = gx.shape[0]
        w_t = w_hh.transpose(1, 2)
        hs = torch.empty_like(gx)
        pre = torch.empty_like(gx) if nonlinearity == "swish" else None  # swish' needs the input
        h = h0
        for t in range(T):
            p = torch.baddbmm(gx[t], h, w_t, out=pre[t] if pre is not None else None)
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
        dgx = torch.empty_like(hs)
        dh_next = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            d = torch.mul(dhs[t] + dh_next, k[t], out=dgx[t])
            dh_next = torch.bmm(d, w_hh)
        return dgx, dh_next, _sum_outer(dgx, _prev(hs, h0)), None
