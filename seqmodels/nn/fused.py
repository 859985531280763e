"""The fused engine's recurrences: forward loop plus hand-written BPTT (autograd.Function).

The input projection gx = x W_ih^T + b of every step is computed outside, in
one GEMM, by the caller. What is left depends on h and must be unrolled:

    forward:  per step one GEMM h_{t-1} W_hh^T (B x H x G*H) + the gate pointwise
    backward: per step one GEMM dgates_t W_hh (B x G*H x H) + the pointwise;
              dW_hh = sum_t dgates_t^T h_{t-1} is ONE big GEMM over all T*B rows
              after the loop, and dgx (-> dW_ih, dx, db) goes back to autograd
              as one (T, B, G*H) tensor: another single GEMM there.

Autograd over a Python loop would instead run T small weight-gradient GEMMs and
record ~10 graph nodes per step; this is what cuDNN/oneDNN do, in Python.
Tensors are time-major (T, B, .) so every per-step slice is contiguous.
The backward is not itself differentiable (no double backward), like cuDNN's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _prev(seq: Tensor, first: Tensor) -> Tensor:
    """(T, B, H) states -> the states before each step: [first, seq[0], ..., seq[T-2]]."""
    return torch.cat((first.unsqueeze(0), seq[:-1]), 0)


def _sum_outer(dg: Tensor, inp: Tensor) -> Tensor:
    """sum_t dg_t^T inp_t as one GEMM: (T, B, G) x (T, B, K) -> (G, K)."""
    return dg.reshape(-1, dg.shape[-1]).t().mm(inp.reshape(-1, inp.shape[-1]))


class LSTMRecurrence(torch.autograd.Function):
    """(gx (T,B,4H), h0, c0, w_hh (4H,H)) -> (hs, cs) each (T, B, H)."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor):
        T, H = gx.shape[0], h0.shape[1]
        w_t = w_hh.t()
        acts = torch.empty_like(gx)  # sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) per step
        hs, cs = gx.new_empty(T, *h0.shape), gx.new_empty(T, *h0.shape)
        h, c = h0, c0
        for t in range(T):
            a = acts[t]
            gates = torch.addmm(gx[t], h, w_t)
            torch.sigmoid(gates, out=a)  # one call for i, f, o (g is overwritten next)
            g = torch.tanh(gates[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])
            c = torch.addcmul(a[:, H : 2 * H] * c, a[:, :H], g, out=cs[t])
            h = torch.mul(a[:, 3 * H :], torch.tanh(c), out=hs[t])
        ctx.save_for_backward(acts, hs, cs, h0, c0, w_hh)
        return hs, cs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor, dcs: Tensor):
        acts, hs, cs, h0, c0, w_hh = ctx.saved_tensors
        T, B, H = hs.shape
        i, f, g, o = acts.chunk(4, 2)
        # Everything that does not depend on the incoming gradient, for all steps at
        # once (a few big vectorised ops instead of ~15 small ones per step):
        tc = torch.tanh(cs)
        a_c = o * (1 - tc * tc)  # d c_t / d h_t, through h = o * tanh(c)
        k_ifg = torch.stack((g * i * (1 - i), _prev(cs, c0) * f * (1 - f), i * (1 - g * g)), 2)
        k_o = tc * o * (1 - o)
        dG = torch.empty_like(acts)
        dG_ifg = dG.view(T, B, 4, H)[:, :, :3]
        dh_next = torch.zeros_like(h0)
        dc_next = torch.zeros_like(c0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh_next
            dc = torch.addcmul(dcs[t] + dc_next, dh, a_c[t])
            torch.mul(k_ifg[t], dc.unsqueeze(1), out=dG_ifg[t])
            torch.mul(k_o[t], dh, out=dG[t, :, 3 * H :])
            dc_next = dc * f[t]
            dh_next = dG[t].mm(w_hh)
        dw = _sum_outer(dG, _prev(hs, h0))
        return dG, dh_next, dc_next, dw


class GRURecurrence(torch.autograd.Function):
    """(gx (T,B,3H), h0, w_hh (3H,H), b_hn (H,) or None, reset_after) -> hs (T, B, H)."""

    @staticmethod
    def forward(
        ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, b_hn: Tensor | None, reset_after: bool
    ):
        T, H = gx.shape[0], h0.shape[1]
        hs = gx.new_empty(T, *h0.shape)
        rz = gx.new_empty(T, h0.shape[0], 2 * H)
        ns = gx.new_empty(T, *h0.shape)
        aux = gx.new_empty(T, *h0.shape)  # reset_after: W_hn h + b_hn; else r * h
        h = h0
        if reset_after:
            w_t = w_hh.t()
            for t in range(T):
                gh = h.mm(w_t)
                if b_hn is not None:
                    gh[:, 2 * H :] += b_hn
                torch.sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H], out=rz[t])
                aux[t] = gh[:, 2 * H :]
                r, z = rz[t, :, :H], rz[t, :, H:]
                n = torch.tanh(torch.addcmul(gx[t, :, 2 * H :], r, aux[t]), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        else:
            w_rz, w_n = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
            for t in range(T):
                torch.sigmoid(torch.addmm(gx[t, :, : 2 * H], h, w_rz), out=rz[t])
                r, z = rz[t, :, :H], rz[t, :, H:]
                rh = torch.mul(r, h, out=aux[t])
                n = torch.tanh(torch.addmm(gx[t, :, 2 * H :], rh, w_n), out=ns[t])
                h = torch.addcmul(n, z, h - n, out=hs[t])
        ctx.reset_after = reset_after
        ctx.has_b_hn = b_hn is not None
        ctx.save_for_backward(hs, rz, ns, aux, h0, w_hh)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor):
        hs, rz, ns, aux, h0, w_hh = ctx.saved_tensors
        T, H = hs.shape[0], h0.shape[1]
        dgx = rz.new_empty(T, h0.shape[0], 3 * H)
        hprev = _prev(hs, h0)
        dh_next = torch.zeros_like(h0)
        if ctx.reset_after:
            # Every per-step gradient is dh_t times a factor known before the loop:
            # d gh = dh * [P1*aux*r(1-r), (h_prev-n)*z(1-z), P1*r], P1 = (1-z)(1-n^2).
            r, z = rz[:, :, :H], rz[:, :, H:]
            p1 = (1 - z) * (1 - ns * ns)
            k = torch.stack((p1 * aux * r * (1 - r), (hprev - ns) * z * (1 - z), p1 * r), 2)
            dgh = rz.new_empty(T, h0.shape[0], 3 * H)  # gradient of gh = W_hh h (+ b)
            dgh4 = dgh.view(T, -1, 3, H)
            dhs_all = torch.empty_like(hs)
            for t in range(T - 1, -1, -1):
                dh = torch.add(dhs[t], dh_next, out=dhs_all[t])
                torch.mul(k[t], dh.unsqueeze(1), out=dgh4[t])
                dh_next = torch.addmm(dh * z[t], dgh[t], w_hh)
            dw = _sum_outer(dgh, hprev)
            db_hn = dgh[:, :, 2 * H :].sum((0, 1)) if ctx.has_b_hn else None
            dgx = torch.cat((dgh[:, :, : 2 * H], dhs_all * p1), 2)  # n: before r scales it
        else:
            w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
            for t in range(T - 1, -1, -1):
                r, z, n = rz[t, :, :H], rz[t, :, H:], ns[t]
                dh = dhs[t] + dh_next
                d = dgx[t]
                dn = torch.mul(dh * (1 - z), 1 - n * n, out=d[:, 2 * H :])
                drh = dn.mm(w_n)
                torch.mul(drh * hprev[t], r * (1 - r), out=d[:, :H])
                torch.mul(dh * (hprev[t] - n), z * (1 - z), out=d[:, H : 2 * H])
                dh_next = torch.addmm(dh * z + drh * r, d[:, : 2 * H], w_rz)
            dw = torch.cat(
                (_sum_outer(dgx[:, :, : 2 * H], hprev), _sum_outer(dgx[:, :, 2 * H :], aux)), 0
            )
            db_hn = None
        return dgx, dh_next, dw, db_hn, None


class RNNRecurrence(torch.autograd.Function):
    """(gx (T,B,H), h0, w_hh (H,H), nonlinearity) -> hs (T, B, H)."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor, nonlinearity: str):
        T = gx.shape[0]
        w_t = w_hh.t()
        hs = torch.empty_like(gx)
        pre = torch.empty_like(gx) if nonlinearity == "swish" else None  # swish' needs the input
        h = h0
        for t in range(T):
            p = torch.addmm(gx[t], h, w_t, out=pre[t] if pre is not None else None)
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
        T = hs.shape[0]
        dgx = torch.empty_like(hs)
        dh_next = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh_next
            if ctx.nonlinearity == "tanh":
                torch.mul(dh, 1 - hs[t] * hs[t], out=dgx[t])
            elif ctx.nonlinearity == "relu":
                torch.mul(dh, hs[t] > 0, out=dgx[t])
            else:  # d/dp p*s(p) = s + p*s*(1-s) = s*(1 + p*(1-s))
                s = torch.sigmoid(pre[t])
                torch.mul(dh, s * (1 + pre[t] * (1 - s)), out=dgx[t])
            dh_next = dgx[t].mm(w_hh)
        return dgx, dh_next, _sum_outer(dgx, _prev(hs, h0)), None


def input_projection(x: Tensor, cell) -> Tensor:
    """gx (T, B, G*H) from x (B, T, I): one GEMM over all steps, time-major output."""
    return F.linear(x.transpose(0, 1), cell.weight_ih, cell.i2h.bias)
