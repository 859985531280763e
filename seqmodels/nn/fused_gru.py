"""Cho et al.'s GRU (reset_after=False) on the fused engine: a hand-written recurrence.

n = tanh(W_n [x, r * h] + b_n) needs the reset gate before the candidate's
hidden product, so this GRU is not one product followed by a `step` and the
fused engine's recurrence for any cell (fused.py) cannot run it. This one can:
per step two products (W_hrz h, then W_hn (r h)) and a few pointwise ops, the
backward written out, the weight gradients one product each over all steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def run(cell: Any, x: Tensor, state: Any, lengths: Tensor | None):
    """x (T, B, I) -> (hs (T, B, H), h_n); the cell is an exact GRUCell(reset_after=False)."""
    h0 = cell.init_state(x.shape[1], x.device, x.dtype) if state is None else state
    if torch.is_autocast_enabled(x.device.type):  # fp32 with autocast off (see fused.py)
        x, h0 = x.float(), h0.float()
    with torch.autocast(x.device.type, enabled=False):
        gx = F.linear(x, cell.weight_ih, cell.i2h.bias)  # all steps' input part at once
        hs = GRURecurrence.apply(gx, h0, cell.weight_hh)
    if lengths is None:
        return hs, hs[-1]
    idx = (lengths - 1).view(1, -1, 1).expand(1, hs.shape[1], hs.shape[2])
    return hs, hs.gather(0, idx).squeeze(0)  # each sequence's own last valid step


def _prev(seq: Tensor, first: Tensor) -> Tensor:
    """(T, B, H) states -> the states before each step: [first, seq[0], ..., seq[T-2]]."""
    return torch.cat((first.unsqueeze(0), seq[:-1]), 0)


def _sum_outer(dg: Tensor, inp: Tensor) -> Tensor:
    """sum over t and b of dg^T inp: (T, B, G) x (T, B, K) -> (G, K), one GEMM."""
    return dg.reshape(-1, dg.shape[-1]).t() @ inp.reshape(-1, inp.shape[-1])


class GRURecurrence(torch.autograd.Function):
    """(gx (T,B,3H), h0 (B,H), w_hh (3H,H)) -> hs (T,B,H). Padding at the end needs no
    mask: valid steps never see it, and the caller takes each sequence's last valid step."""

    @staticmethod
    def forward(ctx: Any, gx: Tensor, h0: Tensor, w_hh: Tensor):
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        hs = gx.new_empty(T, B, H)
        rz = gx.new_empty(T, B, 2 * H)
        ns = gx.new_empty(T, B, H)
        rhs = gx.new_empty(T, B, H)  # r * h, the candidate's hidden input
        w_rz, w_n = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
        h = h0
        for t in range(T):
            torch.sigmoid(torch.addmm(gx[t, :, : 2 * H], h, w_rz), out=rz[t])
            r, z = rz[t, :, :H], rz[t, :, H:]
            rh = torch.mul(r, h, out=rhs[t])
            n = torch.tanh(torch.addmm(gx[t, :, 2 * H :], rh, w_n), out=ns[t])
            h = torch.addcmul(n, z, h - n, out=hs[t])
        ctx.save_for_backward(hs, rz, ns, rhs, h0, w_hh)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor):
        hs, rz, ns, rhs, h0, w_hh = ctx.saved_tensors
        T, B, H = hs.shape
        hprev = _prev(hs, h0)
        r, z = rz[..., :H], rz[..., H:]
        p1 = (1 - z) * (1 - ns * ns)  # d n_pre / d h_t
        q_r = hprev * r * (1 - r)
        q_z = (hprev - ns) * z * (1 - z)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        dgx = rz.new_empty(T, B, 3 * H)
        dh_next = torch.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh_next
            d = dgx[t]
            dn = torch.mul(dh, p1[t], out=d[:, 2 * H :])
            drh = dn @ w_n
            torch.mul(drh, q_r[t], out=d[:, :H])
            torch.mul(dh, q_z[t], out=d[:, H : 2 * H])
            dh_next = torch.addmm(torch.addcmul(dh * z[t], drh, r[t]), d[:, : 2 * H], w_rz)
        dw = torch.cat((_sum_outer(dgx[..., : 2 * H], hprev), _sum_outer(dgx[..., 2 * H :], rhs)))
        return dgx, dh_next, dw
