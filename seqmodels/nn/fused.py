"""The fused engine's recurrence for any cell: what does not depend on h is done once.

A cell (cells.py) is one matrix product over cat(x_t, h_{t-1}) and a step. Run
step by step (the loop engine) autograd computes, at every step, the product
with x_t, the product with h_{t-1}, and in the backward the weight gradient of
both: 4T small matrix products with few rows, the last two slow in every BLAS.
Here, per direction of a layer:

    forward:   gx = x W_ih^T + b              all T steps in one product
               per step: gates = gx_t + h_{t-1} W_hh^T (one product), then the
               cell's own `step` on them, recorded by autograd as usual
    backward:  per step: autograd runs the step's backward and dh = dgates W_hh
               (one product); then, once, in the projection's backward:
               dx = dgx W_ih, dW_ih = dgx^T x, db = sum dgx and
               dW_hh = sum_t dgates_t^T h_{t-1}, one product over all T*B rows

The recurrent weight enters each step's product detached, so autograd computes
no per-step weight gradient; the projection (_Projection) returns the whole of
it, because dgates_t is exactly the gradient of gx_t when the step reads their
sum. A cell whose step needs the halves apart (`split_step`, the reset_after
GRU) gets `h W_hh^T` in a tensor of its own per step, and the gradients of
those reach _HiddenProduct, which returns dW_hh the same way.
The h_{t-1} those products need are the layer's outputs, stacked once after
the loop; the weight-gradient node receives them through a holder (the node is
made before the loop, they exist after it) and refuses a backward if they were
modified in place in between, as autograd does for what it saves itself.

With lengths (padding at the end), every sequence's state stays frozen after
its last valid step (`torch.where` from the shortest sequence's end on), so the
final state is each sequence's own and padded steps add exactly nothing to any
gradient; the caller zeroes padded outputs.

While torch.export traces a layer, the same loop runs with the recurrent weight
in the graph (no side channel, nothing the tracer cannot follow), and with a
dynamic length as torch's `scan` operator, one loop over any number of steps
(_scan). (torch.compile runs the layers outside its graph: recurrent.py.)
Under autocast the recurrence runs in fp32 with autocast off: its custom
backward runs outside autocast and would otherwise meet mixed dtypes.
The backward is not itself differentiable (no double backward), like cuDNN's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._higher_order_ops import scan
from torch.autograd.function import once_differentiable

from seqmodels.nn.cells import Cell, State, check_step_result, overrides


class _Holder:
    """The stacked hidden states, handed to a weight-gradient node after its forward."""

    def __init__(self) -> None:
        self.h0: Tensor | None = None
        self.hs: Tensor | None = None
        self.version = 0

    def fill(self, h0: Tensor, hs: Tensor) -> None:
        self.h0, self.hs = h0.detach(), hs.detach()
        self.version = hs._version

    def weight_grad(self, dg: Tensor) -> Tensor:
        """sum over t and b of dg_t^T h_{t-1}: (T, B, G) x [h0, hs[:-1]] -> (G, H), no copy."""
        if self.hs is None or self.h0 is None:  # the graph was cut before the loop ended
            raise RuntimeError("fused recurrence: backward before the forward finished")
        if self.hs._version != self.version:
            raise RuntimeError(
                "fused recurrence: its outputs were modified in place after the forward; "
                "their old values are needed for the backward (clone them first)"
            )
        hs, G = self.hs, dg.shape[-1]
        dw = dg[0].t() @ self.h0
        if dg.shape[0] > 1:
            dw.addmm_(dg[1:].reshape(-1, G).t(), hs[:-1].reshape(-1, hs.shape[-1]))
        return dw


class _Projection(torch.autograd.Function):
    """gx = x W_ih^T + b for all steps: (T, B, I) -> (T, B, G*H). Its backward also
    returns W_hh's gradient, sum_t dgx_t^T h_{t-1} (valid when each step's gates
    are gx_t + h_{t-1} W_hh^T, so that their gradient is gx_t's)."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, w_ih: Tensor, b: Tensor | None, w_hh: Tensor | None, holder: _Holder
    ) -> Tensor:
        ctx.save_for_backward(x, w_ih)
        ctx.holder, ctx.has_bias, ctx.has_hh = holder, b is not None, w_hh is not None
        return F.linear(x, w_ih, b)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dgx: Tensor):
        x, w_ih = ctx.saved_tensors
        need_x, need_ih, need_b, need_hh, _ = ctx.needs_input_grad
        # autocast off: a .backward() inside an autocast region would run these products
        # in low precision (and the in-place ones on mixed dtypes); the forward ran in fp32
        with torch.autocast(dgx.device.type, enabled=False):
            dg = dgx.reshape(-1, dgx.shape[-1])
            dx = (dg @ w_ih).view(x.shape) if need_x else None
            dw_ih = dg.t() @ x.reshape(-1, x.shape[-1]) if need_ih else None
            db = dg.sum(0) if need_b and ctx.has_bias else None
            dw_hh = ctx.holder.weight_grad(dgx) if need_hh and ctx.has_hh else None
        return dx, dw_ih, db, dw_hh, None


class _HiddenProduct(torch.autograd.Function):
    """Zeros (T, B, G*H) whose slices each step adds its `h W_hh^T` to; the gradient
    that reaches them is every step's dgh_t, and the backward turns it into W_hh's."""

    @staticmethod
    def forward(ctx: Any, w_hh: Tensor, like: Tensor, holder: _Holder) -> Tensor:
        ctx.holder = holder
        return like.new_zeros(like.shape[0], like.shape[1], w_hh.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dgh: Tensor):
        with torch.autocast(dgh.device.type, enabled=False):  # as _Projection's
            return ctx.holder.weight_grad(dgh), None, None


def run(
    cell: Cell, x: Tensor, state: State, lengths: Tensor | None, steps: Any = None
) -> tuple[Tensor, State]:
    """x (T, B, I) time-major -> (hs (T, B, H), final state); state None means zeros.

    `steps`, if given, runs the time loop instead of the eager loop here (the compiled
    engine's chunks, compiled.py): `steps(cell, gx, gh, wt, states, valid) -> (hs, states)`
    with gh the per-step tensors the hidden product is added to (split_step) or None, wt
    W_hh^T detached (None without a hidden product), valid (T, B, 1) or None. Never while
    tracing.
    """
    if state is None:
        state = cell.init_state(x.shape[1], x.device, x.dtype)
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return run(cell, x.float(), _map(state, lambda s: s.float()), lengths, steps)
    states = (state,) if cell.state_size == 1 else tuple(state)
    if not cell.has_step():
        return _by_forward(cell, x, states, lengths)  # (only while tracing: engines.recurrence)
    w_hh = cell.weight_hh
    split = w_hh is not None and overrides(cell, "split_step")
    tracing = torch.compiler.is_compiling()
    holder = _Holder()
    gh_all: Tensor | None = None
    if w_hh is None or tracing:  # no side channel: the graph holds everything
        gx = F.linear(x, cell.weight_ih, cell.i2h.bias)
        wt = None if w_hh is None else w_hh.t()
    elif split:
        gx = F.linear(x, cell.weight_ih, cell.i2h.bias)
        gh_all = _HiddenProduct.apply(w_hh, x, holder)
        wt = w_hh.detach().t()
    else:
        gx = _Projection.apply(x, cell.weight_ih, cell.i2h.bias, w_hh, holder)
        wt = w_hh.detach().t()

    T = x.shape[0]
    valid = None
    if lengths is not None:
        valid = torch.arange(T, device=x.device).view(-1, 1, 1) < lengths.view(1, -1, 1)
    if isinstance(T, torch.SymInt):  # torch.export with a dynamic length
        return _scan(cell, gx, states, valid, split)
    one = cell.state_size == 1
    h0 = states[0]
    if steps is not None and not tracing:
        out, states = steps(cell, gx, gh_all, wt, states, valid)
        if torch.is_grad_enabled():
            holder.fill(h0, out)
        return out, (states[0] if one else states)
    # (a traced graph takes any lengths: it masks every step, reading no length's value)
    first_padded = T if lengths is None else 0 if tracing else int(lengths.min())
    hs: list[Tensor] = []
    gxs = gx.unbind(0)
    ghs = gh_all.unbind(0) if gh_all is not None else None
    for t in range(T):
        h = states[0]
        old = states[0] if one else states
        if wt is None:
            new = cell.step(gxs[t], old)
        elif ghs is not None:
            new = cell.split_step(gxs[t], torch.addmm(ghs[t], h, wt), old)
        elif split:  # tracing: the product in the graph
            new = cell.split_step(gxs[t], h @ wt, old)
        else:
            new = cell.step(torch.addmm(gxs[t], h, wt), old)
        if t == 0:  # once per call: every step returns the same count and shapes
            check_step_result(cell, new, x.shape[1])
        new_states = new if isinstance(new, tuple) else (new,)  # h or (h,) for one state
        if valid is not None and t >= first_padded:
            new_states = _keep_ended(new_states, states, valid[t])
        states = new_states
        hs.append(states[0])
    out = torch.stack(hs)
    if not tracing and torch.is_grad_enabled():  # (inference tensors have no version)
        holder.fill(h0, out)
    return out, (states[0] if one else states)


def _scan(cell: Cell, gx: Tensor, states: tuple[Tensor, ...], valid: Tensor | None, split: bool):
    """The recurrence as torch's `scan` operator, which torch.export keeps as one loop over
    any number of steps (a Python loop would be unrolled for the traced length).

    The combine function reads the cell's parameters inside (a view made outside and
    captured would alias them, which scan refuses) and returns copies of its carry
    (scan's outputs may not alias it). A step that unpacks a parameter by iterating
    it (`a, b = self.p`) trips the same check; indexing it (`self.p[0]`) does not.
    """
    one = cell.state_size == 1

    def combine(carry: tuple[Tensor, ...], inputs: tuple[Tensor, ...]):
        g, h, old = inputs[0], carry[0], carry[0] if one else carry
        w_hh = cell.weight_hh
        if w_hh is None:
            new = cell.step(g, old)
        elif split:
            new = cell.split_step(g, h @ w_hh.t(), old)
        else:
            new = cell.step(torch.addmm(g, h, w_hh.t()), old)
        new_states = new if isinstance(new, tuple) else (new,)  # h or (h,) for one state
        if valid is not None:
            new_states = _keep_ended(new_states, carry, inputs[1])
        return tuple(n.clone() for n in new_states), new_states[0].clone()

    xs = (gx,) if valid is None else (gx, valid)
    final, hs = scan(combine, tuple(states), xs)
    return hs, (final[0] if one else tuple(final))


def _by_forward(cell: Cell, x: Tensor, states: tuple[Tensor, ...], lengths: Tensor | None):
    """A cell with no step (only a forward, as Cho et al.'s GRU) stepped as the loop engine
    steps it: unrolled for a fixed length, as torch's scan for a dynamic one."""
    one = cell.state_size == 1
    valid = None
    if lengths is not None:
        valid = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1) < lengths.view(1, -1, 1)

    def combine(carry: tuple[Tensor, ...], inputs: tuple[Tensor, ...]):
        _, new = cell(inputs[0], carry[0] if one else carry)
        new_states = (new,) if one else tuple(new)
        if valid is not None:
            new_states = _keep_ended(new_states, carry, inputs[1])
        return tuple(n.clone() for n in new_states), new_states[0].clone()

    xs = (x,) if valid is None else (x, valid)
    if isinstance(x.shape[0], torch.SymInt):
        final, hs = scan(combine, states, xs)
    else:
        carry, outs = states, []
        for inputs in zip(*(t.unbind(0) for t in xs), strict=True):
            carry, out = combine(carry, inputs)
            outs.append(out)
        final, hs = carry, torch.stack(outs)
    return hs, (final[0] if one else tuple(final))


def _keep_ended(new: tuple[Tensor, ...], old: tuple[Tensor, ...], valid: Tensor):
    """The new state where the step is valid (B, 1), the old one where a sequence has ended."""
    return tuple(torch.where(valid, n, o) for n, o in zip(new, old, strict=True))


def _map(state: State, fn) -> State:
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)
