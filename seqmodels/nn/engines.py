"""Engines: the ways a recurrent layer runs its cells over time.

All engines read the same parameters (each cell's `i2h` and whatever else it
owns) and give the same numbers:

- `loop`: steps the cell module in Python, one `cell(x_t, state)` per step.
  Runs any cell; the readable reference every other engine is tested against.
- `fused`: runs any cell with a `step` (fused.py): the input product for all
  steps at once, one product per step, the cell's step on autograd, and the
  recurrent weight's gradient as one product over all steps. The built-in LSTM
  also has a hand-written recurrence (fused_lstm.py), and Cho et al.'s GRU,
  which has no step, one of its own (fused_gru.py).
- `compiled`: the fused engine's recurrence for any cell with the time loop run in
  chunks of K steps, each chunk one torch.compile'd call (compiled.py): the step's
  pointwise ops fused into one kernel forward and one backward. Compiles on first use.
- `native`: torch's own fused kernels (`torch._VF.rnn_tanh/rnn_relu/lstm/gru`:
  cuDNN on CUDA, oneDNN/aten on CPU) called with views of i2h (see native.py),
  for the cells that compute exactly what one of them computes.

Which engine can run which cell is decided in one place, seqmodels.nn.support.

`run_loop(cell, x, state, lengths)` works per (layer, direction) with x
batch-first (B, T, F) in the time order set by the caller (the backward
direction gets each sequence reversed within its length); `run_fused(cells, x,
states, lengths)` runs a whole layer, one direction after the other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seqmodels.nn import compiled, fused, fused_gru, fused_lstm
from seqmodels.nn.cells import check_step_result

State = Any  # h (B, H), or a tuple (h, c, ...) of such tensors

# The fused engine's recurrences; seqmodels.nn.support says which one runs a cell.
HAND_LSTM = "lstm"  # fused_lstm.py: the built-in LSTM's BPTT written out
HAND_CHO_GRU = "cho_gru"  # fused_gru.py: Cho et al.'s GRU, which has no step
ANY_STEP = "step"  # fused.py: any cell's step on autograd
COMPILED_STEP = "compiled"  # compiled.py: any cell's step, K steps per compiled call


def run_loop(cell, x: Tensor, state: Any, lengths: Tensor | None):
    """Step the cell module over x (B, T, F). With lengths, padded steps keep the state."""
    if state is None:
        state = cell.init_state(x.shape[0], x.device, x.dtype)
    outs: list[Tensor] = []
    new: Any
    if lengths is None:
        for t, x_t in enumerate(x.unbind(1)):  # unbind, not x[:, t]: its backward is one cat
            out, state = cell(x_t, state)
            if t == 0:
                check_step_result(cell, state, x.shape[0])
            outs.append(out)
        return torch.stack(outs, 1), state
    mask = (torch.arange(x.shape[1], device=x.device) < lengths.view(-1, 1)).unsqueeze(-1)
    for t, (x_t, m_t) in enumerate(zip(x.unbind(1), mask.unbind(1), strict=True)):
        out, new = cell(x_t, state)
        if t == 0:
            check_step_result(cell, new, x.shape[0])
        if isinstance(new, tuple):  # any number of state tensors: (h, c, m, ...)
            state = tuple(torch.where(m_t, n, o) for n, o in zip(new, state, strict=True))
        else:
            state = torch.where(m_t, new, state)
        outs.append(out)
    return torch.where(mask, torch.stack(outs, 1), 0.0), state


# ---------------------------------------------------------------- reversal
class _SwapRows(torch.autograd.Function):
    """x.index_select(0, rows) for a permutation that is its own inverse.

    Its gradient is the same selection, so the backward is a cheap gather too
    (index_select's own backward is an index_add, many times slower on CPU).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, rows: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        (rows,) = ctx.saved_tensors
        return grad.index_select(0, rows), None


def reverse_within(x: Tensor, lengths: Tensor | None, time_dim: int) -> Tensor:
    """Reverse each sequence in time within its own length; padding stays where it is.

    x is (B, T, F) for time_dim=1 or (T, B, F) for time_dim=0. Step t of sequence
    b comes from step lengths[b] - 1 - t: an involution, applying it twice restores x.
    """
    if lengths is None:
        return x.flip(time_dim)
    T, B, feat = x.shape[time_dim], x.shape[1 - time_dim], x.shape[-1]
    t = torch.arange(T, device=x.device).view(-1, 1)
    L = lengths.view(1, -1)
    src = torch.where(t < L, L - 1 - t, t)  # (T, B): the source step of each step
    b = torch.arange(B, device=x.device).view(1, -1)
    # one row per (step, sequence) in x's own layout: rows are whole feature vectors
    rows = src * B + b if time_dim == 0 else (b * T + src).t()
    out = _SwapRows.apply(x.reshape(-1, feat), rows.reshape(-1))
    return out.view(x.shape)


# ---------------------------------------------------------------- fused
def run_fused(
    cells, kinds: tuple[str | None, ...], x: Tensor, states: list[Any], lengths: Tensor | None
):
    """One layer: (B, T, F) -> (B, T, D*H), [final state per direction].

    Per direction one recurrence over the time-major input (the backward
    direction's input reversed within each length first): the cell's kind of
    recurrence (`recurrence`; seqmodels.nn.support decides it). Padded outputs
    are zeroed once at the end.
    """
    T = x.shape[1]
    xt = x.transpose(0, 1).contiguous()  # (T, B, F): one step's rows are one block
    outs: list[Tensor] = []
    finals: list[Any] = []
    for d, (cell, kind, s) in enumerate(zip(cells, kinds, states, strict=True)):
        x_d = xt if d == 0 else reverse_within(xt, lengths, 0)
        hs, final = recurrence(kind)(cell, x_d, s, lengths)
        finals.append(final)
        outs.append(hs if d == 0 else reverse_within(hs, lengths, 0))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
    if lengths is not None:
        # where, not a multiply: a padded step's state may be inf (relu), and inf * 0 is nan
        mask = torch.arange(T, device=x.device).view(-1, 1) < lengths.view(1, -1)
        out = torch.where(mask.unsqueeze(-1), out, 0.0)
    return out.transpose(0, 1), finals


def recurrence(kind: str | None):
    """The fused engine's recurrence of a kind (above): `run(cell, x, state, lengths)`.

    The built-in LSTM has a hand-written one (fused_lstm.py), faster than the
    one for any cell at every shape measured (scripts/bench_nn.py's "fused:any-cell"
    row runs the LSTM's step on the other); Cho et al.'s GRU needs its reset
    gate before its second product, which no `step` can express, and has its
    own (fused_gru.py); the compiled engine runs every cell on compiled.run. While a tracer (torch.compile, torch.export) runs, always
    fused.run (which steps a cell without a step by its forward, traceably): the
    hand-written ones write into preallocated tensors, which tracing cannot differentiate.
    """
    if torch.compiler.is_compiling():
        return fused.run
    hand = {HAND_LSTM: fused_lstm.run, HAND_CHO_GRU: fused_gru.run, COMPILED_STEP: compiled.run}
    return hand.get(kind or ANY_STEP, fused.run)
