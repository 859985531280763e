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
from torch import Tensor

from seqmodels.nn import fused
from seqmodels.nn.cells import GRUCell, LSTMCell, RNNCell

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
def run_fused(cell, x: Tensor, state: State | None, lengths: Tensor | None):
    """Input projection in one GEMM, then the recurrence with hand-written BPTT (fused.py).

    With lengths the recurrence runs over every step (padding sits at the end,
    so valid steps never see it); outputs are masked once and the final state
    is gathered at each sequence's last valid step. No per-step masking.
    """
    if state is None:
        state = cell.init_state(x.shape[0], x.device, x.dtype)
    gx = fused.input_projection(x, cell)  # (T, B, G*H)
    w_hh = cell.weight_hh
    c: Tensor | None = None
    if isinstance(cell, LSTMCell):
        hs, cs = fused.LSTMRecurrence.apply(gx, state[0], state[1], w_hh)
        c = cs.transpose(0, 1)
    elif isinstance(cell, GRUCell):
        hs = fused.GRURecurrence.apply(gx, state, w_hh, cell.bias_hn, cell.reset_after)
    elif isinstance(cell, RNNCell):
        hs = fused.RNNRecurrence.apply(gx, state, w_hh, cell.nonlinearity)
    else:
        raise TypeError(f"fused engine: unknown cell type {type(cell).__name__}")
    hs = hs.transpose(0, 1)  # (B, T, H)
    if lengths is None:
        h_n = hs[:, -1]
        return hs, (h_n if c is None else (h_n, c[:, -1]))
    h_n = gather_last(hs, lengths)
    return _masked(hs, lengths), (h_n if c is None else (h_n, gather_last(c, lengths)))


def _masked(hs: Tensor, lengths: Tensor) -> Tensor:
    # where, not a multiply: a padded step's state may be inf (relu), and inf * 0 is nan
    mask = torch.arange(hs.shape[1], device=hs.device) < lengths.view(-1, 1)
    return torch.where(mask.unsqueeze(-1), hs, 0.0)
