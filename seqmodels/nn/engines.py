"""Engines: the ways a recurrent layer runs its cells over time.

All engines read the same parameters (each cell's `i2h`, and `bias_hn` for the
reset_after GRU) and give the same numbers:

- `loop`: steps the cell module in Python, one `cell(x_t, state)` per step.
  The readable reference every other engine is tested against.
- `fused`: applies the input columns of i2h to all steps in one GEMM, then runs
  the recurrence (one small GEMM + pointwise per step) in a tight function.
- `native`: torch's own fused kernels (`torch._VF.rnn_tanh/rnn_relu/lstm/gru`:
  cuDNN on CUDA, oneDNN/aten on CPU) called with views of i2h (see native.py).

`loop` and `fused` work per (layer, direction): `run(cell, x, state, lengths)`
with x batch-first (B, T, F) and the time order already set by the caller
(the backward direction gets each sequence reversed within its length).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqmodels.nn.cells import GRUCell, LSTMCell, RNNCell, activation

State = Any  # h (B, H), or (h, c) for the LSTM


def gather_last(seq: Tensor, lengths: Tensor) -> Tensor:
    """seq (B, T, H) -> seq[b, lengths[b] - 1] (B, H): the state after each sequence's last step."""
    idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, seq.shape[-1])
    return seq.gather(1, idx).squeeze(1)


def run_loop(cell, x: Tensor, state: Any, lengths: Tensor | None):
    """Step the cell module over x (B, T, F). With lengths, padded steps keep the state."""
    if state is None:
        state = cell.init_state(x.shape[0], x.device, x.dtype)
    outs: list[Tensor] = []
    new: Any
    if lengths is None:
        for x_t in x.unbind(1):  # unbind, not x[:, t]: its backward is one cat, not T zero-fills
            out, state = cell(x_t, state)
            outs.append(out)
        return torch.stack(outs, 1), state
    mask = (torch.arange(x.shape[1], device=x.device) < lengths.view(-1, 1)).unsqueeze(-1)
    for x_t, m_t in zip(x.unbind(1), mask.unbind(1), strict=True):
        out, new = cell(x_t, state)
        if isinstance(new, tuple):
            state = (torch.where(m_t, new[0], state[0]), torch.where(m_t, new[1], state[1]))
        else:
            state = torch.where(m_t, new, state)
        outs.append(out)
    return torch.where(mask, torch.stack(outs, 1), 0.0), state


# ---------------------------------------------------------------- fused
# The recurrences below take gx = the input projection of every step (B, T, G*H),
# already computed in one GEMM, and unroll only the part that depends on h.


def _rnn_recurrence(gx: Tensor, h: Tensor, w_hh: Tensor, act) -> Tensor:
    hs = []
    w_t = w_hh.t()
    for g in gx.unbind(1):
        h = act(torch.addmm(g, h, w_t))
        hs.append(h)
    return torch.stack(hs, 1)


def _lstm_recurrence(
    gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, keep_c: bool
) -> tuple[Tensor, Tensor]:
    hs, cs = [], []
    w_t = w_hh.t()
    for g in gx.unbind(1):
        i, f, gg, o = torch.addmm(g, h, w_t).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
        if keep_c:
            cs.append(c)
    return torch.stack(hs, 1), (torch.stack(cs, 1) if keep_c else c)


def _gru_recurrence(
    gx: Tensor, h: Tensor, w_hh: Tensor, b_hn: Tensor | None, reset_after: bool
) -> Tensor:
    hs = []
    H = h.shape[1]
    if reset_after:
        w_t = w_hh.t()
        b = torch.cat((b_hn.new_zeros(2 * H), b_hn)) if b_hn is not None else None
        for g in gx.unbind(1):
            gh = torch.mm(h, w_t) if b is None else torch.addmm(b, h, w_t)
            rz = torch.sigmoid(g[:, : 2 * H] + gh[:, : 2 * H])
            r, z = rz[:, :H], rz[:, H:]
            n = torch.tanh(g[:, 2 * H :] + r * gh[:, 2 * H :])
            h = n + z * (h - n)
            hs.append(h)
    else:
        w_rz, w_n = w_hh[: 2 * H].t(), w_hh[2 * H :].t()
        for g in gx.unbind(1):
            rz = torch.sigmoid(torch.addmm(g[:, : 2 * H], h, w_rz))
            r, z = rz[:, :H], rz[:, H:]
            n = torch.tanh(torch.addmm(g[:, 2 * H :], r * h, w_n))
            h = n + z * (h - n)
            hs.append(h)
    return torch.stack(hs, 1)


def run_fused(cell, x: Tensor, state: State | None, lengths: Tensor | None):
    """Input projection in one GEMM, then the recurrence; same numbers as run_loop.

    With lengths the recurrence runs over every step (padding sits at the end,
    so valid steps never see it); outputs are masked once and the final state
    is gathered at each sequence's last valid step. No per-step masking.
    """
    if state is None:
        state = cell.init_state(x.shape[0], x.device, x.dtype)
    gx = F.linear(x, cell.weight_ih, cell.i2h.bias)
    w_hh = cell.weight_hh
    if isinstance(cell, LSTMCell):
        h0, c0 = state
        hs, c = _lstm_recurrence(gx, h0, c0, w_hh, lengths is not None)
        if lengths is None:
            return hs, (hs[:, -1], c)
        return _masked(hs, lengths), (gather_last(hs, lengths), gather_last(c, lengths))
    if isinstance(cell, GRUCell):
        hs = _gru_recurrence(gx, state, w_hh, cell.bias_hn, cell.reset_after)
    elif isinstance(cell, RNNCell):
        hs = _rnn_recurrence(gx, state, w_hh, activation(cell.nonlinearity))
    else:
        raise TypeError(f"fused engine: unknown cell type {type(cell).__name__}")
    if lengths is None:
        return hs, hs[:, -1]
    return _masked(hs, lengths), gather_last(hs, lengths)


def _masked(hs: Tensor, lengths: Tensor) -> Tensor:
    # where, not a multiply: a padded step's state may be inf (relu), and inf * 0 is nan
    mask = torch.arange(hs.shape[1], device=hs.device) < lengths.view(-1, 1)
    return torch.where(mask.unsqueeze(-1), hs, 0.0)
